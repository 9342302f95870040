"""Training step throughput on the CPU: this product against two Keras routes.

Three routes train the same dense tower (the demo's `movies `EmbeddingMlp``) on the same
pre-materialized batches (ids already mapped on the host, cached in memory by
tf.data), with the same batch size and the same Keras Adam on the dense layers:

* `product`: `CpuEmbedding` through the trainer's own training function
  (`loop.compile_train_steps`, called as `loop.train` calls it: up to
  `steps_per_execution` steps per call, the loss and step read after each
  call, ids recorded for the health figures): TPU lookups, sparse TPU update
  rules. The same function at one step per call (the trainer's loop before
  `steps_per_execution`) is timed too, in the same process.
* `keras`: what a user writes without this product: one
  `tf_keras.layers.Embedding` per table, ragged lookups combined with a masked
  mean / sum / sqrtn (sequences zero padded and truncated), and a Keras
  Adagrad or Adam on the tables.
* `tpu_serving`: the CPU route of TensorFlow Recommenders:
  `tf.tpu.experimental.embedding.TPUEmbeddingForServing` for the lookups and a
  Keras optimizer applied to its tables.

Two workloads: the demo's model and embedding spec on a real Transform output
of synthetic movies (`prepare_movies`, `run_movies_case`), and one table of a
growing vocabulary (`run_vocabulary_case`), where the cost of the embedding
optimizer shows. On the demo, the rest of a Trainer run is measured too: the
input pipeline alone (`run_input_case`) and, in this product's case, the
evaluation and the export after the timed steps (`_movies_fixed_costs`).
"""

import os
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from benchmarks import measure
from components import embedding as emb
from components.embedding import native_kernels
from components.trainer import backends
from components.trainer import config as config_lib
from components.trainer import health as health_lib
from components.trainer import inputs
from components.trainer import loop
from components.trainer import tasks
from pipelines.movies import embedding_spec
from pipelines.movies import features
from pipelines.movies import model as model_lib

ROUTE_PRODUCT = 'product'
ROUTE_KERAS = 'keras'
ROUTE_SERVING = 'tpu_serving'
ROUTES = (ROUTE_PRODUCT, ROUTE_KERAS, ROUTE_SERVING)
OPTIMIZERS = ('adagrad', 'adam')
# The demo spec's Adagrad rate; Adam at its usual default.
LEARNING_RATES = {'adagrad': 0.1, 'adam': 0.001}
DENSE_LEARNING_RATE = 1e-3
VOCABULARY_FEATURE = 'items'
# The cast's max_sequence_length: the longest cast of the synthetic movies.
MOVIES_CAST_LENGTH = 12

StepFn = Callable[[Any], tf.Tensor]
# run(iterator, num_steps) -> the last step's loss.
StepsFn = Callable[[Any, int], tf.Tensor]


def _tests_dir() -> str:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(root, 'tests')


def _trainer_fixture() -> Any:
  """The tests' synthetic movies (``tests/trainer_fixture.py``)."""
  if _tests_dir() not in sys.path:
    sys.path.insert(0, _tests_dir())
  import trainer_fixture  # pylint: disable=g-import-not-at-top
  return trainer_fixture


def prepare_movies(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Writes the Transform output of synthetic movies under case['root']."""
  trainer_fixture = _trainer_fixture()
  start = time.perf_counter()
  examples_dir, transform_dir = trainer_fixture.build_transform_output(
      case['root'], train_rows=case['train_rows'],
      eval_rows=case['eval_rows'])
  return {'seconds': time.perf_counter() - start,
          'examples_dir': examples_dir, 'transform_dir': transform_dir}


def _optimizer_spec(name: str) -> emb.EmbeddingOptimizer:
  if name == 'adagrad':
    return emb.Adagrad(learning_rate=LEARNING_RATES[name])
  if name == 'adam':
    return emb.Adam(learning_rate=LEARNING_RATES[name])
  raise ValueError(f'Unknown optimizer {name!r}; known: {OPTIMIZERS}.')


def keras_table_optimizer(name: str) -> Any:
  """The Keras optimizer a user would put on the tables."""
  if name == 'adagrad':
    return tf_keras.optimizers.Adagrad(
        learning_rate=LEARNING_RATES[name], initial_accumulator_value=0.1)
  if name == 'adam':
    return tf_keras.optimizers.Adam(learning_rate=LEARNING_RATES[name])
  raise ValueError(f'Unknown optimizer {name!r}; known: {OPTIMIZERS}.')


def combine(vectors: tf.RaggedTensor, combiner: str) -> tf.Tensor:
  """Combines ragged `[batch, None, dim]` vectors; empty rows give zeros."""
  total = tf.reduce_sum(vectors, axis=1)
  count = tf.cast(vectors.row_lengths(), total.dtype)[:, tf.newaxis]
  if combiner == 'sum':
    return total
  if combiner == 'mean':
    return tf.math.divide_no_nan(total, count)
  if combiner == 'sqrtn':
    return tf.math.divide_no_nan(total, tf.sqrt(count))
  raise ValueError(f'Unknown combiner {combiner!r}.')


class KerasTables(tf_keras.layers.Layer):
  """One `tf_keras.layers.Embedding` per table, looked up with ragged ids."""

  def __init__(self, resolved: Any):
    super().__init__(name='keras_tables')
    self._features = dict(resolved.features)
    self._tables = {
        name: tf_keras.layers.Embedding(table.vocabulary_size,
                                        table.dimension, name=name)
        for name, table in resolved.tables.items()
    }

  @property
  def tables(self) -> Dict[str, Any]:
    """The `tf_keras.layers.Embedding` of each table, by table name."""
    return dict(self._tables)

  def build(self, input_shape: Any = None) -> None:
    """Creates every table now, so that the optimizer sees them."""
    for table in self._tables.values():
      table.build((None, None))
    super().build(input_shape)

  def call(self, ids: Mapping[str, tf.SparseTensor]) -> Dict[str, tf.Tensor]:
    return {key: self._lookup(feature, ids[key])
            for key, feature in self._features.items()}

  def _lookup(self, feature: Any, sparse_ids: tf.SparseTensor) -> tf.Tensor:
    vectors = self._tables[feature.table_name](
        tf.RaggedTensor.from_sparse(sparse_ids))
    if feature.is_sequence:
      return vectors.to_tensor(
          shape=[None, feature.max_sequence_length, feature.dimension])
    return combine(vectors, feature.combiner)


def _without_optimizers(feature_config: Mapping[str, Any]) -> Dict[str, Any]:
  """The feature configs with tables that create no optimizer slots."""
  api = tf.tpu.experimental.embedding
  tables = {}
  result = {}
  for key, config in feature_config.items():
    old = config.table
    if old.name not in tables:
      tables[old.name] = api.TableConfig(
          vocabulary_size=old.vocabulary_size, dim=old.dim,
          initializer=old.initializer, optimizer=None, combiner=old.combiner,
          name=old.name)
    result[key] = api.FeatureConfig(
        table=tables[old.name], max_sequence_length=config.max_sequence_length,
        validate_weights_and_indices=config.validate_weights_and_indices,
        name=config.name)
  return result


def _loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  return tf.reduce_mean(
      tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def _keras_step(lookup: Callable[[Any, Any], Any], tables: List[tf.Variable],
                table_optimizer: Any, model: Any, dense_optimizer: Any
               ) -> StepFn:
  """A step that trains the tables with a Keras optimizer."""

  @tf.function
  def step(iterator):
    ids, weights, dense, labels = next(iterator)
    with tf.GradientTape() as tape:
      activations = lookup(ids, weights)
      logits = model(backends.model_inputs(activations, dense), training=True)
      loss = _loss(labels, logits)
    gradients = tape.gradient(loss, tables + model.trainable_variables)
    table_optimizer.apply_gradients(zip(gradients[:len(tables)], tables))
    dense_optimizer.apply_gradients(
        zip(gradients[len(tables):], model.trainable_variables))
    return loss

  return step


class _ProductSteps:
  """The trainer's training function, called as `loop.train` calls it."""

  def __init__(self, resolved: Any, model: Any, dense_optimizer: Any,
               steps_per_execution: int):
    self.steps_per_execution = steps_per_execution
    self._global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.backend = backends.CpuBackend(
        resolved.compile(self._global_step),
        resolved.compile_optimizer(self._global_step))
    self._health = health_lib.TrainingHealth(resolved, self.backend.name)
    self._run = loop.compile_train_steps(
        self.backend, model, dense_optimizer, tasks.Task(tasks.TaskConfig()),
        self._health, self._global_step)
    self._inputs = {}

  def __call__(self, iterator: Any, num_steps: int) -> tf.Tensor:
    # One recording wrapper per iterator: one trace.
    recording = self._inputs.setdefault(id(iterator),
                                        self._health.recording(iterator))
    loss = None
    while num_steps > 0:
      calls = min(num_steps, self.steps_per_execution)
      loss = self._run(recording, calls)
      float(loss), int(self._global_step.numpy())  # As loop.train reads them.
      num_steps -= calls
    return loss


def _one_by_one(step: StepFn) -> StepsFn:
  """`step` called once per step, as a hand-written loop does."""

  def run(iterator: Any, num_steps: int) -> tf.Tensor:
    loss = None
    for _ in range(num_steps):
      loss = step(iterator)
    return loss

  return run


def _keras_route_step(resolved: Any, optimizer: str, model: Any,
                      dense_optimizer: Any) -> StepsFn:
  tables = KerasTables(resolved)

  def lookup(ids, weights):
    if weights:
      raise NotImplementedError('The Keras route has no weighted lookups.')
    return tables(ids)

  tables.build()
  return _one_by_one(_keras_step(
      lookup, list(tables.trainable_variables),
      keras_table_optimizer(optimizer), model, dense_optimizer))


def _serving_route_step(resolved: Any, optimizer: str, model: Any,
                        dense_optimizer: Any) -> StepsFn:
  global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
  embedding = tf.tpu.experimental.embedding.TPUEmbeddingForServing(
      _without_optimizers(resolved.compile(global_step)), optimizer=None)

  def lookup(ids, weights):
    return embedding.embedding_lookup(ids, backends.full_weights(ids, weights))

  return _one_by_one(_keras_step(
      lookup, list(embedding.embedding_tables.values()),
      keras_table_optimizer(optimizer), model, dense_optimizer))


def make_steps(route: str, resolved: Any, optimizer: str, model: Any,
               steps_per_execution: int = 1) -> StepsFn:
  """`run(iterator, num_steps)` of `route`; Keras Adam on every tower.

  `steps_per_execution` is this product's (the Keras routes step once per
  call, as a hand-written loop does).
  """
  dense_optimizer = tf_keras.optimizers.Adam(DENSE_LEARNING_RATE)
  if route == ROUTE_PRODUCT:
    return _ProductSteps(resolved, model, dense_optimizer, steps_per_execution)
  if route == ROUTE_KERAS:
    return _keras_route_step(resolved, optimizer, model, dense_optimizer)
  if route == ROUTE_SERVING:
    return _serving_route_step(resolved, optimizer, model, dense_optimizer)
  raise ValueError(f'Unknown route {route!r}; known: {ROUTES}.')


def materialize(dataset: tf.data.Dataset, num_batches: int) -> Any:
  """An endless iterator over `num_batches` batches held in memory."""
  cached = dataset.take(num_batches).cache().repeat()
  iterator = iter(cached)
  for _ in range(num_batches):  # Fills the cache: no file reads from now on.
    next(iterator)
  return iterator


def _steps_per_rep(run: StepsFn, iterator: Any,
                   case: Mapping[str, Any]) -> int:
  """Steps per repetition so that one lasts about case['rep_seconds']."""
  start = time.perf_counter()
  float(run(iterator, case['min_steps']))
  seconds = (time.perf_counter() - start) / case['min_steps']
  steps = int(round(case['rep_seconds'] / max(seconds, 1e-6)))
  return int(np.clip(steps, case['min_steps'], case['max_steps']))


def _time_reps(run: StepsFn, iterator: Any, batch_size: int, steps: int,
               reps: int) -> Dict[str, Any]:
  """ms/step and examples/s of `reps` repetitions of `steps` steps."""
  step_ms, throughput = [], []
  for _ in range(reps):
    start = time.perf_counter()
    final_loss = float(run(iterator, steps))
    seconds = time.perf_counter() - start
    step_ms.append(1000.0 * seconds / steps)
    throughput.append(steps * batch_size / seconds)
  return {'step_ms': measure.summarize(step_ms),
          'examples_per_second': measure.summarize(throughput),
          'final_loss': final_loss}


def time_steps(run: StepsFn, iterator: Any, batch_size: int,
               case: Mapping[str, Any]) -> Dict[str, Any]:
  """Times the first step (tracing), warms up, then times the repetitions."""
  start = time.perf_counter()
  float(run(iterator, 1))
  first_step_seconds = time.perf_counter() - start
  float(run(iterator, case['warmup_steps']))
  steps = _steps_per_rep(run, iterator, case)
  return {'first_step_seconds': first_step_seconds, 'steps_per_rep': steps,
          **_time_reps(run, iterator, batch_size, steps, case['reps'])}


def _train_and_time(case: Mapping[str, Any], resolved: Any, iterator: Any,
                    dense_keys: List[str],
                    fixed_costs: Optional[Callable[[Any, Any], Dict[str, Any]]]
                    = None) -> Dict[str, Any]:
  """Builds the route's model and step, and times it (memory included).

  `fixed_costs(backend, model)`, for this product's route, times the
  Trainer's other once-per-run work after the steps.
  """
  tf_keras.utils.set_random_seed(0)
  rss_before = measure.current_rss_bytes()
  model = model_lib.build_model(resolved, dense_keys)
  run = make_steps(case['route'], resolved, case['optimizer'], model,
                   case.get('steps_per_execution',
                            config_lib.TrainingConfig.steps_per_execution))
  result = time_steps(run, iterator, case['batch_size'], case)
  if case['route'] == ROUTE_PRODUCT:
    result['steps_per_execution'] = run.steps_per_execution
    run.steps_per_execution = 1
    result['one_step_per_call'] = _time_reps(
        run, iterator, case['batch_size'], result['steps_per_rep'],
        case['reps'])
    if fixed_costs is not None:
      result['fixed_costs'] = fixed_costs(run.backend, model)
  result['rss_before_model_bytes'] = rss_before
  result['memory_plan_bytes'] = resolved.memory_plan().total_bytes
  return result


def _movies_resolved(case: Mapping[str, Any], output: Any) -> Any:
  # The pipeline module brings TFX's orchestration packages: imported here,
  # so that the vocabulary cases' workers start without them.
  from pipelines.movies import pipeline  # pylint: disable=g-import-not-at-top
  spec = embedding_spec.create_embedding_spec(pipeline.TRAIN_STEPS)
  spec = type(spec)(columns=spec.columns,
                    optimizer=_optimizer_spec(case['optimizer']))
  return spec.resolve(
      tf_transform_output=output,
      max_sequence_lengths={
          features.transformed_name(features.CAST): MOVIES_CAST_LENGTH})


def _movies_inputs(case: Mapping[str, Any]) -> Tuple[Any, Any, Any, List[str]]:
  """(Transform output, resolved spec, feature spec, dense keys)."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  output = tft.TFTransformOutput(case['transform_dir'])
  resolved = _movies_resolved(case, output)
  feature_spec = output.transformed_feature_spec()
  dense_keys = inputs.dense_feature_keys(
      feature_spec, features.TRANSFORMED_LABEL, list(resolved.features))
  return output, resolved, feature_spec, dense_keys


def _movies_dataset(case: Mapping[str, Any], resolved: Any, feature_spec: Any,
                    dense_keys: List[str], split: str = 'train',
                    large: bool = False,
                    parse_once: bool = True) -> tf.data.Dataset:
  """The trainer's input pipeline: read, parse, batch, map ids.

  In memory as `loop.train` decides with the default
  `TrainingConfig.in_memory_train_mib`, unless `large`: then as for files
  above it, parsed once into blocks (`parse_once`) or streamed.
  """
  training = split == 'train'
  files = inputs.split_files(
      [_trainer_fixture().examples_artifact(case['examples_dir'])], [split])
  form = inputs.training_input(
      files, 0 if large else config_lib.TrainingConfig.in_memory_train_mib,
      parse_once)
  return inputs.make_dataset(
      files, feature_spec, features.TRANSFORMED_LABEL, case['batch_size'],
      training=training, shuffle_buffer=1024, seed=0,
      drop_remainder=training,
      prepare=loop.BatchPreparer(resolved.id_mapper(), dense_keys),
      in_memory=form == inputs.IN_MEMORY,
      blocks_dir=(os.path.join(case['root'], 'parsed_blocks')
                  if form == inputs.PARSED_BLOCKS else None))


def _movies_fixed_costs(case: Mapping[str, Any], output: Any, resolved: Any,
                        feature_spec: Any, dense_keys: List[str]
                       ) -> Callable[[Any, Any], Dict[str, Any]]:
  """Times the Trainer's evaluation and export as `training` runs them."""
  from components.trainer import export  # pylint: disable=g-import-not-at-top

  def measure_costs(backend: Any, model: Any) -> Dict[str, Any]:
    task = tasks.Task(tasks.TaskConfig())
    start = time.perf_counter()
    loop.evaluate(backend, model, task, backend.distribute(
        _movies_dataset(case, resolved, feature_spec, dense_keys, 'eval')))
    evaluation = time.perf_counter() - start
    root = os.path.join(case['root'], f'export_{case["optimizer"]}')
    checkpoint = tf.train.Checkpoint(embedding=backend.embedding,
                                     model=model).save(
                                         os.path.join(root, 'ckpt'))
    start = time.perf_counter()
    tables = export.restore_tables(
        resolved.compile(tf.Variable(0, dtype=tf.int64)), checkpoint)
    export.export_serving_model(os.path.join(root, 'serving'), tables, model,
                                resolved.id_mapper(), output, [], dense_keys,
                                task)
    return {'evaluation_seconds': evaluation,
            'export_seconds': time.perf_counter() - start}

  return measure_costs


def run_movies_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """The demo model and spec on the synthetic movies' Transform output."""
  output, resolved, feature_spec, dense_keys = _movies_inputs(case)
  iterator = materialize(
      _movies_dataset(case, resolved, feature_spec, dense_keys),
      case['num_batches'])
  return _train_and_time(
      case, resolved, iterator, dense_keys,
      _movies_fixed_costs(case, output, resolved, feature_spec, dense_keys))


def _consume(iterator: Any, num_batches: tf.Tensor) -> tf.Tensor:
  """Takes `num_batches` batches in a graph loop, as the training function
  takes them; returns a sum that depends on every id, weight and label."""
  total = tf.constant(0, tf.int64)
  for _ in tf.range(num_batches):
    ids, weights, _, labels = next(iterator)
    parts = [tf.reduce_sum(tf.cast(t, tf.int64)) for t in
             tf.nest.flatten((ids, weights, labels), expand_composites=True)]
    total += tf.add_n(parts)
  return total


def _input_rate(dataset: tf.data.Dataset,
                case: Mapping[str, Any]) -> Dict[str, Any]:
  """Examples/s of `dataset`'s batches taken by a graph loop."""
  iterator = iter(dataset)
  consume = tf.function(_consume)
  batches = tf.constant(case['input_batches'], tf.int64)
  int(consume(iterator, batches))
  throughput = []
  for _ in range(case['reps']):
    start = time.perf_counter()
    int(consume(iterator, batches))
    throughput.append(case['input_batches'] * case['batch_size'] /
                      (time.perf_counter() - start))
  return measure.summarize(throughput)


def run_input_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """The demo's input pipeline alone, in examples/s (no training).

  Reads the gzipped transformed examples, shuffles, batches, parses and maps
  ids (`BatchPreparer`) exactly as `loop.train` does, and hands the batches
  to a graph loop as the training function takes them (a Python `next()`
  would add the eager rebuilding of every batch's tensors, which training
  does not pay): case['input_batches'] batches per repetition after one
  warm-up call. Timed three times: as the Trainer configures it by default
  for the demo (its files are under `in_memory_train_mib`: parsed into
  memory once); as for training data above that size (parsed once into
  blocks on disk, `blocks_examples_per_second`); and with `parse_once`
  False (streamed and parsed every epoch, `streaming_examples_per_second`).
  The one-off parsing (into memory, into blocks) happens before the timing.
  """
  _, resolved, feature_spec, dense_keys = _movies_inputs(case)

  def rate(**kwargs: Any) -> Dict[str, Any]:
    return _input_rate(_movies_dataset(case, resolved, feature_spec,
                                       dense_keys, **kwargs), case)

  return {'examples_per_second': rate(),
          'blocks_examples_per_second': rate(large=True),
          'streaming_examples_per_second': rate(large=True, parse_once=False)}


def vocabulary_spec(vocabulary_size: int, dimension: int,
                    optimizer: str) -> emb.EmbeddingSpec:
  """One bag of identity ids, mean-combined, in a table of the given size."""
  column = emb.embedding_column(
      emb.categorical_column_with_identity(VOCABULARY_FEATURE,
                                           vocabulary_size),
      dimension=dimension, combiner='mean')
  return emb.EmbeddingSpec(columns=[column],
                           optimizer=_optimizer_spec(optimizer))


def _vocabulary_ids(case: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
  """`[num_batches * batch_size, ids_per_row]` uniform random ids, and 0/1
  labels; the ids are drawn from the first case['id_range'] rows, by default
  all."""
  rng = np.random.default_rng(0)
  rows = case['num_batches'] * case['batch_size']
  ids = rng.integers(0, case.get('id_range', case['vocabulary_size']),
                     size=(rows, case['ids_per_row']), dtype=np.int64)
  labels = rng.integers(0, 2, size=(rows, 1)).astype(np.float32)
  return ids, labels


def _vocabulary_dataset(case: Mapping[str, Any]) -> tf.data.Dataset:
  """Batches of `_vocabulary_ids`' ids (as a sparse feature) and labels."""

  def to_features(batch_ids: tf.Tensor,
                  batch_labels: tf.Tensor) -> Tuple[Dict[str, Any], tf.Tensor]:
    sparse = tf.RaggedTensor.from_tensor(batch_ids).to_sparse()
    return {VOCABULARY_FEATURE: sparse}, batch_labels

  return (tf.data.Dataset.from_tensor_slices(_vocabulary_ids(case))
          .batch(case['batch_size'], drop_remainder=True).map(to_features))


def _vocabulary_batches(case: Mapping[str, Any]) -> Tuple[Any, Any]:
  """The resolved spec of case['vocabulary_size'] rows, and an endless
  iterator over the case's batches, id-mapped and held in memory."""
  resolved = vocabulary_spec(case['vocabulary_size'], case['dimension'],
                             case['optimizer']).resolve()
  dataset = _vocabulary_dataset(case).map(
      loop.BatchPreparer(resolved.id_mapper(), []))
  return resolved, materialize(dataset, case['num_batches'])


def run_growth_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """This product's step on the smallest and the largest table, timed in
  alternation in one process.

  The cases of one size each run in their own process, minutes apart: a
  slow spell of the machine during one of them skews the growth between
  them. Here the repetitions of the two sizes alternate (case['reps'] of
  each, the same steps per repetition), so a slow spell falls on both.
  Returns each size's ms/step and `growth`, largest / smallest, the median
  of the ratios of the adjacent repetitions.
  """
  runs = {}
  for size in case['vocabulary_sizes']:
    resolved, iterator = _vocabulary_batches({**case, 'vocabulary_size': size})
    tf_keras.utils.set_random_seed(0)
    run = make_steps(ROUTE_PRODUCT, resolved, case['optimizer'],
                     model_lib.build_model(resolved, []),
                     config_lib.TrainingConfig.steps_per_execution)
    float(run(iterator, 1 + case['warmup_steps']))
    runs[size] = (run, iterator)
  # The first calls after the other table was built ran slowly (a 3-step
  # call of the small table, right after the large one's first call: 59 ms
  # a step, against about 4 later): warm both before choosing the steps.
  for _ in range(2):
    for run, iterator in runs.values():
      float(run(iterator, case['min_steps']))
  smallest, largest = min(runs), max(runs)
  steps = _steps_per_rep(*runs[smallest], case)
  step_ms = {size: [] for size in runs}
  for _ in range(case['reps']):
    for size, (run, iterator) in runs.items():
      start = time.perf_counter()
      float(run(iterator, steps))
      step_ms[size].append(1000.0 * (time.perf_counter() - start) / steps)
  ratios = [big / small
            for small, big in zip(step_ms[smallest], step_ms[largest])]
  return {'step_ms': {str(size): measure.summarize(values)
                      for size, values in step_ms.items()},
          'growth': measure.summarize(ratios), 'steps_per_rep': steps}


def run_vocabulary_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """One table of case['vocabulary_size'] rows; batch x ids_per_row ids."""
  resolved, iterator = _vocabulary_batches(case)
  return _train_and_time(case, resolved, iterator, [])


def _kernel_steps(batches: List[np.ndarray], dimension: int,
                  kernel: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
                  ) -> StepsFn:
  """`run(_, num_steps)`: `kernel(ids, grads)` on one batch of ids (with
  fixed random gradients) per step, the batches in turn; the sum of the
  kernel's outputs is returned, so none is pruned."""
  ids = tf.ragged.constant(batches, dtype=tf.int64)
  grads = tf.RaggedTensor.from_row_splits(
      tf.random.stateless_uniform([int(ids.values.shape[0]), dimension],
                                  seed=[0, 0], minval=-1e-3, maxval=1e-3),
      ids.row_splits)
  position = tf.Variable(0, dtype=tf.int64)

  @tf.function(autograph=False)
  def run_steps(num_steps: tf.Tensor) -> tf.Tensor:
    def step(i: tf.Tensor, total: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
      batch = position.assign_add(1) % len(batches)
      return i + 1, total + kernel(ids[batch], grads[batch])
    return tf.while_loop(lambda i, _: i < num_steps, step,
                         [tf.constant(0, tf.int64), tf.constant(0.0)])[1]

  return lambda _, num_steps: run_steps(tf.constant(num_steps, tf.int64))


def run_sparse_kernel_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """TensorFlow's sparse kernels alone, on the vocabulary cases' batches of
  ids: what the two table accesses of a step cost at each table size, before
  any gradient or model.

  * `lookup`: `SparseSegmentMean`, each batch row's ids combined, as this
    product's forward pass does it.
  * `update_distinct_rows`: the fused sparse Adagrad kernel on the batch's
    distinct rows, sorted: the rows this product's Adagrad updates
    (duplicates summed first).
  * `native_lookup`, `native_update_distinct_rows`: the same two with the
    prefetching kernels of `native_kernels` (the product's CPU path), where
    they are built.
  """
  ids, _ = _vocabulary_ids(case)
  batches = list(ids.reshape(case['num_batches'], -1))
  shape = [case['vocabulary_size'], case['dimension']]
  table = tf.Variable(tf.random.stateless_uniform(shape, seed=[1, 0],
                                                  minval=-0.05, maxval=0.05))
  accumulator = tf.Variable(tf.fill(shape, 0.1))
  rows_of_ids = tf.constant(np.repeat(np.arange(case['batch_size']),
                                      case['ids_per_row']))

  def lookup(batch_ids: tf.Tensor, _) -> tf.Tensor:
    return tf.reduce_sum(tf.sparse.segment_mean(
        table.read_value_no_copy(), batch_ids, rows_of_ids,
        num_segments=case['batch_size'])[0])

  def update(batch_ids: tf.Tensor, grads: tf.Tensor) -> tf.Tensor:
    applied = tf.raw_ops.ResourceSparseApplyAdagrad(
        var=table.handle, accum=accumulator.handle,
        lr=tf.constant(LEARNING_RATES['adagrad']), grad=grads,
        indices=batch_ids, use_locking=False)
    with tf.control_dependencies([applied]):
      return tf.constant(0.0)

  def native_lookup(batch_ids: tf.Tensor, _) -> tf.Tensor:
    return tf.reduce_sum(native_kernels.bag_reduce(
        table.read_value_no_copy(), batch_ids, rows_of_ids,
        case['batch_size'], 'mean')[0])

  def native_update(batch_ids: tf.Tensor, grads: tf.Tensor) -> tf.Tensor:
    applied = native_kernels.apply_adagrad(
        table, accumulator, batch_ids, grads,
        tf.constant(LEARNING_RATES['adagrad']))
    with tf.control_dependencies([applied]):
      return tf.constant(0.0)

  distinct = [np.unique(b) for b in batches]
  kernels = [('lookup', lookup, batches),
             ('update_distinct_rows', update, distinct)]
  if native_kernels.library() is not None:
    kernels += [('native_lookup', native_lookup, batches),
                ('native_update_distinct_rows', native_update, distinct)]
  result = {}
  for name, kernel, per_batch in kernels:
    run = _kernel_steps(per_batch, case['dimension'], kernel)
    result[name] = time_steps(run, None, case['batch_size'], case)
    result[name]['ids_per_step'] = float(np.mean([len(b) for b in per_batch]))
  return result
