"""The CPU speed paths against the plain implementations they replace.

`bag_lookup` (fused unweighted bag lookups) is compared with
`serving_embedding_lookup` through `CpuEmbedding(fused_bags=False)`, and the
fused update kernels of `tpu_update_rules` with the gather / `update_rows` /
scatter reference (`use_fused_kernels=False`).
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import embedding as emb
from components.embedding import bag_lookup
from components.embedding import cpu_embedding
from components.embedding import ids as ids_lib
from components.embedding import tpu_update_rules
from components.trainer import backends
from components.trainer import config as config_lib
from components.trainer import loop
from components.trainer import tasks

E = tf.tpu.experimental.embedding
BATCH = 7
VOCABULARY = 11
DIM = 5


def _bag_config():
  """One bag per combiner, two of them sharing a table."""
  tables = {
      combiner: E.TableConfig(vocabulary_size=VOCABULARY, dim=DIM,
                              combiner=combiner, name=f't_{combiner}')
      for combiner in ('sum', 'mean', 'sqrtn')
  }
  config = {f'bag_{c}': E.FeatureConfig(table=t) for c, t in tables.items()}
  config['bag_mean_2'] = E.FeatureConfig(table=tables['mean'])
  return config


def _ragged_rows(rng):
  """Rows with duplicate ids, empty rows (row 0 among them) and long rows."""
  lengths = rng.integers(0, 7, size=BATCH)
  lengths[0], lengths[1] = 0, 6
  return tf.ragged.constant(
      [list(rng.integers(1, VOCABULARY, size=n)) for n in lengths],
      dtype=tf.int64, ragged_rank=1)


def _with_gaps(ragged):
  """The same bag as a SparseTensor whose column positions have gaps."""
  sparse = ragged.to_sparse()
  indices = sparse.indices * tf.constant([[1, 2]], tf.int64)
  return tf.SparseTensor(indices, sparse.values,
                         sparse.dense_shape * tf.constant([1, 2], tf.int64))


def _features(rng, kind):
  config = _bag_config()
  convert = {'ragged': lambda r: r, 'sparse': lambda r: r.to_sparse(),
             'sparse_with_gaps': _with_gaps}[kind]
  return {name: convert(_ragged_rows(rng)) for name in config}


def _lookup_and_gradients(fused, features, use_function):
  """Activations and dense table gradients of a fresh, seeded embedding."""
  tf.keras.utils.set_random_seed(0)
  embedding = cpu_embedding.CpuEmbedding(_bag_config(), E.Adagrad(0.1),
                                         fused_bags=fused)
  embedding.build()

  def run(features):
    with tf.GradientTape() as tape:
      activations = embedding(features)
      loss = sum(tf.reduce_sum(value * tf.range(1.0, DIM + 1.0))
                 for value in activations.values())
    return activations, tape.gradient(loss, embedding.trainable_variables)

  activations, gradients = (tf.function(run) if use_function else run)(
      features)
  for gradient in gradients:
    assert isinstance(gradient, tf.IndexedSlices)
  touched = [set(g.indices.numpy().tolist()) for g in gradients]
  dense = [tf.convert_to_tensor(g).numpy() for g in gradients]
  return ({k: v.numpy() for k, v in activations.items()}, dense, touched)


@pytest.mark.parametrize('kind', ['ragged', 'sparse', 'sparse_with_gaps'])
@pytest.mark.parametrize('use_function', [False, True])
def test_fused_bags_match_serving_lookup(kind, use_function):
  features = _features(np.random.default_rng(7), kind)
  fused = _lookup_and_gradients(True, features, use_function)
  plain = _lookup_and_gradients(False, features, use_function)
  for name in fused[0]:
    np.testing.assert_allclose(fused[0][name], plain[0][name], rtol=1e-6,
                               atol=1e-7, err_msg=name)
    assert fused[0][name].shape == (BATCH, DIM)
    np.testing.assert_array_equal(fused[0][name][0], np.zeros(DIM))
  for fused_gradient, plain_gradient in zip(fused[1], plain[1]):
    np.testing.assert_allclose(fused_gradient, plain_gradient, rtol=1e-6,
                               atol=1e-7)
  # The same rows are touched: no id 0 for empty rows, nothing dropped.
  assert fused[2] == plain[2]
  assert all(0 not in rows for rows in fused[2])


def test_only_unweighted_rank2_bags_are_fused():
  table = E.TableConfig(vocabulary_size=4, dim=2, name='t')
  bag = E.FeatureConfig(table=table)
  sequence = E.FeatureConfig(table=table, max_sequence_length=3)
  ragged = tf.ragged.constant([[1, 2], [3]], dtype=tf.int64)
  assert bag_lookup.is_fused_bag(ragged, None, bag)
  assert bag_lookup.is_fused_bag(ragged.to_sparse(), None, bag)
  assert not bag_lookup.is_fused_bag(ragged, tf.ones_like(ragged, tf.float32),
                                     bag)
  assert not bag_lookup.is_fused_bag(ragged, None, sequence)
  assert not bag_lookup.is_fused_bag(tf.constant([[1], [2]], tf.int64), None,
                                     bag)


def _gradient_with_duplicates(rng, rows=40):
  ids = rng.integers(0, VOCABULARY, size=rows)
  ids[:4] = 3  # Row 3 four times: summed before the update.
  values = rng.normal(size=(rows, DIM)).astype(np.float32)
  return tf.IndexedSlices(tf.constant(values), tf.constant(ids, tf.int64),
                          tf.constant([VOCABULARY, DIM], tf.int64))


def _apply(optimizer, use_fused, gradients, use_function):
  """The table and slots after `apply_sparse` of each gradient in turn."""
  tf.keras.utils.set_random_seed(1)
  table = tf.Variable(tf.random.normal([VOCABULARY, DIM]))
  slots = {name: tf.Variable(tf.fill([VOCABULARY, DIM], 0.1 + i))
           for i, name in enumerate(tpu_update_rules.slot_names(optimizer))}

  def apply(gradient):
    tpu_update_rules.apply_sparse(
        optimizer, table, slots, gradient,
        tpu_update_rules.evaluate_learning_rate(optimizer.learning_rate),
        use_fused_kernels=use_fused)

  apply = tf.function(apply) if use_function else apply
  for gradient in gradients:
    apply(gradient)
  return table.numpy(), {k: v.numpy() for k, v in slots.items()}


@pytest.mark.parametrize('optimizer', [
    E.SGD(0.3),
    E.Adagrad(0.2),
    E.Adagrad(0.2, clipvalue=(-0.5, 0.4)),
    E.SGD(0.3, clipvalue=(-0.1, 0.2)),
    E.Adam(0.1),
    E.Adam(0.1, sum_inside_sqrt=False, clipvalue=(-0.3, 0.3)),
], ids=['sgd', 'adagrad', 'adagrad_clip_gradient', 'sgd_clip_gradient',
        'lazy_adam', 'lazy_adam_epsilon_outside_clip_gradient'])
@pytest.mark.parametrize('use_function', [False, True])
def test_fused_kernels_match_reference_rule(optimizer, use_function):
  assert tpu_update_rules.fused_kernel(optimizer) is not None
  rng = np.random.default_rng(5)
  gradients = [_gradient_with_duplicates(rng) for _ in range(3)]
  fused = _apply(optimizer, True, gradients, use_function)
  plain = _apply(optimizer, False, gradients, use_function)
  np.testing.assert_allclose(fused[0], plain[0], rtol=1e-6, atol=1e-7)
  assert fused[1].keys() == plain[1].keys()
  for name in plain[1]:
    np.testing.assert_allclose(fused[1][name], plain[1][name], rtol=1e-6,
                               atol=1e-7, err_msg=name)
  untouched = sorted(set(range(VOCABULARY)) - {
      int(i) for g in gradients for i in g.indices.numpy()})
  before = _apply(optimizer, False, [], use_function)
  np.testing.assert_array_equal(fused[0][untouched], before[0][untouched])


@pytest.mark.parametrize('optimizer', [
    E.Adam(0.1, weight_decay_factor=0.01),
    E.FTRL(0.1),
    E.AdagradMomentum(0.1),
    E.Adagrad(0.1, weight_decay_factor=0.01),
    E.Adagrad(0.1, clip_weight_min=-1.0),
    E.SGD(0.1, clip_weight_max=1.0),
], ids=['adam_weight_decay', 'ftrl', 'adagrad_momentum', 'weight_decay', 'clip_weight_min',
        'clip_weight_max'])
def test_rules_without_an_exact_kernel_stay_plain(optimizer):
  assert tpu_update_rules.fused_kernel(optimizer) is None


class _Tower(tf_keras.Model):
  """Concatenated activations into one logit; its call needs AutoGraph."""

  def __init__(self):
    super().__init__()
    self.dense = tf_keras.layers.Dense(1, kernel_initializer='ones')

  def call(self, inputs, training=False):
    embeddings = inputs['embeddings']
    parts = [tf.reshape(embeddings[key],
                        [-1, int(np.prod(embeddings[key].shape[1:]))])
             for key in sorted(embeddings)]
    logits = self.dense(tf.concat(parts, axis=1))
    if tf.reduce_sum(logits) > 1e9:  # A tensor condition: AutoGraph's job.
      logits = logits * 0.5
    return logits


def _step_config():
  """Bags of every combiner and a sequence; Adagrad shared, one SGD table."""
  shared = E.TableConfig(vocabulary_size=VOCABULARY, dim=DIM, combiner='mean',
                         name='shared')
  own = E.TableConfig(vocabulary_size=VOCABULARY, dim=3, combiner='sqrtn',
                      optimizer=E.SGD(0.5), name='own')
  return {'mean_bag': E.FeatureConfig(table=shared),
          'other_bag': E.FeatureConfig(table=shared),
          'sqrtn_bag': E.FeatureConfig(table=own),
          'sequence': E.FeatureConfig(table=shared, max_sequence_length=2)}


def _batches(count):
  rng = np.random.default_rng(11)
  return [({name: _ragged_rows(rng).to_sparse() for name in _step_config()},
           {}, {}, tf.constant(rng.integers(0, 2, size=(BATCH, 1)),
                               tf.float32)) for _ in range(count)]


def _trained_tables(backend, batches):
  tf_keras.utils.set_random_seed(3)
  model = _Tower()
  step = backend.train_step(model, tf_keras.optimizers.SGD(0.1),
                            tasks.Task(tasks.TaskConfig()))
  iterator = iter(tf.data.Dataset.from_tensors(batches[0]).concatenate(
      tf.data.Dataset.from_tensors(batches[1])))
  losses = [float(step(iterator)) for _ in batches]
  tables = [v.numpy() for v in backend.embedding.trainable_variables]
  slots = backend.embedding.slot_variables('shared')['accumulators'].numpy()
  return losses, tables, slots, model.dense.kernel.numpy()


def test_train_step_matches_the_plain_implementation(monkeypatch):
  """The backend's step (fused lookups and kernels, optimizers traced without
  AutoGraph, no device id check) trains as the plain implementation does."""
  batches = _batches(2)
  tf_keras.utils.set_random_seed(2)
  fast = backends.CpuBackend(_step_config(), E.Adagrad(0.2))
  assert not fast.embedding._settings.validate_ids  # pylint: disable=protected-access
  got = _trained_tables(fast, batches)

  monkeypatch.setattr(tpu_update_rules, 'fused_kernel', lambda *_: None)
  tf_keras.utils.set_random_seed(2)
  plain = backends.CpuBackend(_step_config(), E.Adagrad(0.2),
                              validate_ids=True)
  plain.embedding = cpu_embedding.CpuEmbedding(
      _step_config(), E.Adagrad(0.2), fused_bags=False)
  expected = _trained_tables(plain, batches)
  np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
  for got_table, expected_table in zip(got[1], expected[1]):
    np.testing.assert_allclose(got_table, expected_table, rtol=1e-5,
                               atol=1e-6)
  np.testing.assert_allclose(got[2], expected[2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[3], expected[3], rtol=1e-5, atol=1e-6)


def _identity_mapper():
  column = emb.embedding_column(
      emb.categorical_column_with_identity('bag', VOCABULARY), dimension=DIM)
  return emb.EmbeddingSpec(columns=[column],
                           optimizer=emb.Adagrad(0.1)).resolve().id_mapper()


@pytest.mark.parametrize('kind', ['ragged', 'sparse_with_gaps'])
def test_id_mapper_skips_renumbering_only_where_it_changes_nothing(kind):
  """Ragged bags are right-ragged already: the mapper leaves out renumbering
  and must give the indices the renumbering gives."""
  rows = _ragged_rows(np.random.default_rng(4))
  inputs = rows if kind == 'ragged' else _with_gaps(rows)
  ids = _identity_mapper()({'bag': inputs})[0]['bag']
  renumbered, _ = ids_lib._renumber_positions(ids, None)  # pylint: disable=protected-access
  np.testing.assert_array_equal(ids.indices.numpy(),
                                renumbered.indices.numpy())
  np.testing.assert_array_equal(ids.values.numpy(), rows.flat_values.numpy())



class _LossWindow:
  """The part of `health.TrainingHealth` the step loop uses: the loss sum."""

  def __init__(self):
    self.total = tf.Variable(0.0, dtype=tf.float64)
    self.steps = tf.Variable(0, dtype=tf.int64)

  def add_loss(self, loss):
    self.total.assign_add(tf.cast(loss, tf.float64))
    self.steps.assign_add(1)

  def mean(self):
    return float(self.total.numpy()) / int(self.steps.numpy())


def _iterate(batches):
  dataset = tf.data.Dataset.from_tensors(batches[0])
  for batch in batches[1:]:
    dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
  return iter(dataset)


def test_several_steps_per_call_train_as_one_step_per_call():
  """`loop.compile_train_steps` runs the steps in a graph loop: the same
  mean loss, step count, tables and slots as one step per call."""
  batches = _batches(4)

  def train(steps_per_call):
    tf_keras.utils.set_random_seed(2)
    backend = backends.CpuBackend(_step_config(), E.Adagrad(0.2))
    tf_keras.utils.set_random_seed(3)
    step, losses = tf.Variable(0, dtype=tf.int64), _LossWindow()
    run = loop.compile_train_steps(
        backend, _Tower(), tf_keras.optimizers.SGD(0.1),
        tasks.Task(tasks.TaskConfig()), losses, step)
    iterator = _iterate(batches)
    for _ in range(len(batches) // steps_per_call):
      run(iterator, steps_per_call)
    return (int(step.numpy()), losses.mean(),
            [v.numpy() for v in backend.embedding.trainable_variables],
            backend.embedding.slot_variables('shared')['accumulators'].numpy())

  one, several = train(1), train(4)
  assert one[0] == several[0] == 4
  np.testing.assert_allclose(several[1], one[1], rtol=1e-6)
  for got, expected in zip(several[2], one[2]):
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(several[3], one[3], rtol=1e-6, atol=1e-7)


def test_a_call_stops_after_the_step_whose_loss_is_not_finite():
  batches = _batches(4)
  backend = backends.CpuBackend(_step_config(), E.Adagrad(0.2))
  step, losses = tf.Variable(0, dtype=tf.int64), _LossWindow()
  model = _Tower()
  calls = tf.Variable(0, dtype=tf.int64)

  class _Exploding(tf_keras.Model):  # NaN outputs from the second step on.

    def call(self, inputs, training=False):
      factor = tf.where(calls.assign_add(1) > 1, np.nan, 1.0)
      return model(inputs, training=training) * factor

  run = loop.compile_train_steps(
      backend, _Exploding(), tf_keras.optimizers.SGD(0.1),
      tasks.Task(tasks.TaskConfig()), losses, step)
  loss = run(_iterate(batches), 4)
  assert not np.isfinite(float(loss))
  assert int(step.numpy()) == 2


def test_calls_end_at_log_checkpoint_and_final_steps():
  config = config_lib.TrainingConfig(
      model_fn='a.b', label_key='y', train_steps=100, log_every=30,
      checkpoint_every=40, steps_per_execution=25)
  assert [loop.steps_in_next_call(step, config)
          for step in (0, 25, 30, 40, 59, 80, 90, 99)] == [
              25, 5, 10, 20, 1, 10, 10, 1]


def test_fused_bag_gradients_are_known_to_have_distinct_rows():
  table = tf.Variable(tf.ones([10, 2]))
  ids = tf.sparse.from_dense(tf.constant([[1, 2, 1], [3, 1, 0]], tf.int64))

  @tf.function
  def distinct(looked_up_twice):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(bag_lookup.lookup_bag(table, ids, 'mean'))
      if looked_up_twice:
        loss += tf.reduce_sum(bag_lookup.lookup_bag(table, ids, 'sum'))
    gradient = tape.gradient(loss, table)
    return tpu_update_rules.has_distinct_rows(gradient)

  assert distinct(False)
  assert not distinct(True)  # The two gradients are concatenated.
  eager = tf.IndexedSlices(tf.ones([2, 2]), tf.constant([1, 1]))
  assert not tpu_update_rules.has_distinct_rows(eager)
