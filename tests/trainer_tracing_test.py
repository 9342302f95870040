"""Evaluation and export trace little, and user models keep AutoGraph.

Evaluation traces its predict step once for every batch of the dataset's
element spec (ragged lengths and a partial last batch included) and updates
the metrics eagerly without AutoGraph; the serving export converts only the
user's model with AutoGraph and saves no tf_keras layer traces. Models and
metrics whose Python code branches on tensors still work in both.
"""

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow.python.autograph.core import ag_ctx  # pylint: disable=g-direct-tensorflow-import

from components import embedding as emb
from components.trainer import autograph_rules
from components.trainer import backends
from components.trainer import export
from components.trainer import health as health_lib
from components.trainer import loop
from components.trainer import tasks
from components.trainer import verify

VOCABULARY = 10
DIM = 4
ITEMS = 'item_xf'
SEQUENCE = 'history_xf'
DENSE = 'x_xf'
# The model's branch: a batch whose mean dense feature is above it is shifted.
THRESHOLD = 0.5


class BranchingModel(tf_keras.Model):
  """One logit; its call branches on a tensor, which needs AutoGraph."""

  def __init__(self):
    super().__init__()
    self.dense = tf_keras.layers.Dense(1)

  def call(self, inputs, training=False):
    embeddings = inputs['embeddings']
    parts = [embeddings[ITEMS], tf.reduce_sum(embeddings[SEQUENCE], axis=1),
             tf.reshape(inputs['features'][DENSE], [-1, 1])]
    logits = self.dense(tf.concat(parts, axis=1))
    if tf.reduce_mean(inputs['features'][DENSE]) > THRESHOLD:
      logits = logits + 3.0
    else:
      logits = logits - 3.0
    return logits


class PositiveShare(tf_keras.metrics.Metric):
  """Share of positive labels; records the AutoGraph status of its update."""

  statuses = []

  def __init__(self):
    super().__init__(name='positive_share')
    self.positive = self.add_weight(name='positive', initializer='zeros')
    self.total = self.add_weight(name='total', initializer='zeros')

  def update_state(self, labels, predictions, sample_weight=None):
    PositiveShare.statuses.append(ag_ctx.control_status_ctx().status)
    count = tf.reduce_sum(tf.cast(labels > 0.5, tf.float32))
    if count > 0:  # A tensor condition: runs eagerly as plain Python.
      self.positive.assign_add(count)
    self.total.assign_add(tf.cast(tf.size(labels), tf.float32))

  def result(self):
    return self.positive / self.total


def branching_metrics():
  """The custom task's ``metrics_fn``."""
  return {'positive_share': PositiveShare()}


def per_example_squared_error(labels, outputs):
  """The custom task's ``loss_fn``."""
  return tf.reshape(tf.math.squared_difference(labels, outputs), [-1])


def _resolved():
  bag = emb.embedding_column(
      emb.categorical_column_with_identity(ITEMS, VOCABULARY), dimension=DIM)
  sequence = emb.embedding_column(
      emb.sequence_categorical_column_with_identity(SEQUENCE, VOCABULARY),
      dimension=DIM, max_sequence_length=3)
  return emb.EmbeddingSpec(columns=[bag, sequence],
                           optimizer=emb.Adagrad(0.1)).resolve()


def _backend(resolved):
  global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
  return backends.CpuBackend(resolved.compile(global_step),
                             resolved.compile_optimizer(global_step))


def _rows(count, seed, dense_offset=0.0):
  rng = np.random.default_rng(seed)
  return [{ITEMS: list(rng.integers(0, VOCABULARY, size=rng.integers(0, 4))),
           SEQUENCE: list(rng.integers(0, VOCABULARY,
                                       size=rng.integers(0, 5))),
           DENSE: float(rng.normal() + dense_offset),
           'label': float(rng.integers(0, 2))} for _ in range(count)]


def _dataset(rows, batch_size, resolved):
  """Batches as ``loop.train`` feeds them: ids mapped by ``BatchPreparer``."""

  def generate():
    for row in rows:
      yield ({ITEMS: np.array(row[ITEMS], np.int64),
              SEQUENCE: np.array(row[SEQUENCE], np.int64),
              DENSE: np.float32(row[DENSE])},
             np.array([row['label']], np.float32))

  signature = ({ITEMS: tf.TensorSpec([None], tf.int64),
                SEQUENCE: tf.TensorSpec([None], tf.int64),
                DENSE: tf.TensorSpec([], tf.float32)},
               tf.TensorSpec([1], tf.float32))
  features = tf.data.Dataset.from_generator(generate,
                                            output_signature=signature)
  return features.ragged_batch(batch_size).map(
      lambda f, labels: ({ITEMS: f[ITEMS].to_sparse(),
                          SEQUENCE: f[SEQUENCE].to_sparse(),
                          DENSE: f[DENSE]}, labels)).map(
                              loop.BatchPreparer(resolved.id_mapper(),
                                                 [DENSE]))


def _batches_of_every_shape(resolved):
  """Batches of 4 with both branches taken and a partial last batch of 2."""
  rows = _rows(4, seed=1, dense_offset=3.0) + _rows(6, seed=2,
                                                    dense_offset=-3.0)
  return rows, _dataset(rows, 4, resolved)


def _built_model(backend, dataset):
  """A BranchingModel whose variables exist, as after training."""
  tf_keras.utils.set_random_seed(0)
  model = BranchingModel()
  ids, weights, dense, _ = next(iter(dataset))
  model(backends.model_inputs(
      backend.embedding(ids, backends.full_weights(ids, weights)), dense))
  return model


def test_predict_step_traces_once_for_the_element_spec():
  resolved = _resolved()
  backend = _backend(resolved)
  _, dataset = _batches_of_every_shape(resolved)
  model = _built_model(backend, dataset)
  once = backend.predict_step(model, dataset.element_spec)
  general = backend.predict_step(model)
  shifts = []
  for batch in dataset:
    labels, outputs = once(batch)
    expected_labels, expected = general(batch)
    np.testing.assert_array_equal(labels.numpy(), expected_labels.numpy())
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), rtol=1e-6)
    # The branch follows each batch's values, not the traced batch's.
    ids, weights, dense, _ = batch
    activations = backend.embedding(ids, backends.full_weights(ids, weights))
    eager = model(backends.model_inputs(activations, dense), training=False)
    np.testing.assert_allclose(outputs.numpy(), eager.numpy(), rtol=1e-6)
    shifts.append(float(tf.reduce_mean(dense[DENSE])) > THRESHOLD)
  assert shifts == [True, False, False]  # Both branches; last batch is 2.
  assert once.experimental_get_tracing_count() == 1
  assert general.experimental_get_tracing_count() > 1


class _RecordingBackend(backends.CpuBackend):
  """Keeps the predict step that ``evaluate`` asks for."""

  def predict_step(self, model, element_spec=None):
    self.predict = super().predict_step(model, element_spec)
    return self.predict


def test_evaluate_traces_once_and_scores_every_example():
  resolved = _resolved()
  backend = _backend(resolved)
  backend.__class__ = _RecordingBackend
  rows, dataset = _batches_of_every_shape(resolved)
  model = _built_model(backend, dataset)
  task = tasks.Task(tasks.TaskConfig())
  metrics = loop.evaluate(backend, model, task, dataset)
  assert backend.predict.experimental_get_tracing_count() == 1
  assert metrics['examples'] == len(rows)
  labels, outputs = zip(*[backend.predict(batch) for batch in dataset])
  expected = task.metrics()
  expected.update(tf.concat(labels, 0), tf.concat(outputs, 0))
  for name, value in expected.result().items():
    assert metrics[name] == np.float32(value) or np.isclose(
        metrics[name], value, rtol=1e-6), name


def test_evaluate_updates_metrics_eagerly_without_autograph():
  resolved = _resolved()
  tf_keras.utils.set_random_seed(0)
  rows, dataset = _batches_of_every_shape(resolved)
  task = tasks.Task(tasks.TaskConfig(
      kind='custom', loss_fn=f'{__name__}.per_example_squared_error',
      metrics_fn=f'{__name__}.branching_metrics'))
  PositiveShare.statuses.clear()
  metrics = loop.evaluate(_backend(resolved), BranchingModel(), task, dataset)
  positive = sum(row['label'] > 0.5 for row in rows)
  assert metrics['positive_share'] == np.float32(positive / len(rows))
  assert metrics['examples'] == len(rows)
  assert PositiveShare.statuses == [ag_ctx.Status.DISABLED] * 3


class _Transform(tf_keras.layers.Layer):
  """Stands in for Transform's layer: raw features to transformed ones."""

  def call(self, raw):
    return {ITEMS: raw['item'], SEQUENCE: raw['history'],
            DENSE: raw['x'] * 2.0}


class _TransformOutput:
  """The two methods of ``tft.TFTransformOutput`` that the export calls."""

  def __init__(self):
    self._layer = _Transform()

  def raw_feature_spec(self):
    return {'item': tf.io.VarLenFeature(tf.int64),
            'history': tf.io.VarLenFeature(tf.int64),
            'x': tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
            'label': tf.io.FixedLenFeature([], tf.float32, default_value=0.0)}

  def transform_features_layer(self):
    return self._layer


def _raw_examples(rows):
  def int64s(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return [tf.train.Example(features=tf.train.Features(feature={
      'item': int64s(row[ITEMS]), 'history': int64s(row[SEQUENCE]),
      'x': tf.train.Feature(float_list=tf.train.FloatList(
          value=[row[DENSE]]))})).SerializeToString() for row in rows]


def test_serving_model_runs_a_branching_model_without_keras_traces(tmp_path):
  resolved = _resolved()
  backend = _backend(resolved)
  _, dataset = _batches_of_every_shape(resolved)
  model = _built_model(backend, dataset)
  checkpoint = tf.train.Checkpoint(embedding=backend.embedding,
                                   model=model).save(str(tmp_path / 'ckpt'))
  transform_output = _TransformOutput()
  task = tasks.Task(tasks.TaskConfig())
  serving_dir = str(tmp_path / 'serving')
  export.export_serving_model(
      serving_dir, export.restore_tables(resolved.compile(
          tf.Variable(0, dtype=tf.int64)), checkpoint),
      model, resolved.id_mapper(), transform_output, ['label'], [DENSE],
      task)
  for rows in (_rows(3, seed=5, dense_offset=2.0),
               _rows(3, seed=6, dense_offset=-2.0)):
    examples = _raw_examples(rows)
    outputs = verify.training_path_outputs(
        examples, resolved, BranchingModel(), checkpoint, transform_output,
        ['label'], [DENSE])
    expected = {key: value.numpy() for key, value in
                task.serving_outputs(tf.constant(outputs)).items()}
    verify.check_serving(verify.serving_outputs(serving_dir, examples),
                         expected)
  # tf_keras's traces of each layer's call are not saved (tracing them
  # without AutoGraph failed on this model's tensor condition).
  loaded = tf.saved_model.load(serving_dir)
  assert list(loaded.signatures) == [export.SERVING_SIGNATURE]
  assert loaded.model.dense.kernel.shape == model.dense.kernel.shape
  for keras_object in (loaded.model, loaded.model.dense, loaded.tft_layer):
    assert not hasattr(keras_object, 'call_and_return_conditional_losses')


def test_autograph_skips_tf_keras_but_converts_user_models():
  from tensorflow.python.autograph.impl import conversion  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  assert autograph_rules.skip_tf_keras()
  rules = len(autograph_rules.config.CONVERSION_RULES)
  assert autograph_rules.skip_tf_keras()  # Idempotent.
  assert len(autograph_rules.config.CONVERSION_RULES) == rules
  assert conversion.is_allowlisted(tf_keras.optimizers.Adam.apply_gradients)
  assert not conversion.is_allowlisted(BranchingModel.call)

  # A model branching on tensors trains in the traced loop: both branches,
  # each step's loss as the eager model computes it before the step.
  resolved = _resolved()
  backend = _backend(resolved)
  _, dataset = _batches_of_every_shape(resolved)
  model = _built_model(backend, dataset)
  task = tasks.Task(tasks.TaskConfig())
  run = loop.compile_train_steps(
      backend, model, tf_keras.optimizers.SGD(0.0), task,
      health_lib.TrainingHealth(resolved, backend.name),
      tf.Variable(0, dtype=tf.int64))
  iterator = iter(dataset)
  for ids, weights, dense, labels in dataset:
    outputs = model(backends.model_inputs(
        backend.embedding(ids, backends.full_weights(ids, weights)), dense),
                    training=True)
    expected = tf.reduce_mean(task.per_example_loss(labels, outputs))
    np.testing.assert_allclose(float(run(iterator, 1)), float(expected),
                               rtol=1e-5)
