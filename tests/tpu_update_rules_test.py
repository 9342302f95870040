"""Tests the TPU embedding optimizers' update rules against NumPy references.

The references below are written from the formulas of TensorFlow's
`optimization_parameters.proto` (documented in `tpu_update_rules`), row by row
in float64, independently of the TensorFlow implementation.
"""

import numpy as np
import pytest
import tensorflow as tf

from components.embedding import cpu_embedding
from components.embedding import tpu_update_rules

E = tf.tpu.experimental.embedding
VOCAB = 12
DIM = 3
TOUCHABLE = 8  # Batches only look up ids below this; higher rows stay cold.
BATCH_IDS = 7
STEPS = 3


def _np_rule(optimizer, w, slots, g, lr):
  """One TPU update of rows `w` (float64), returns (w, slots)."""
  s = dict(slots)
  if isinstance(optimizer, E.SGD):
    return w - lr * g, s
  if isinstance(optimizer, E.Adagrad):
    s['accumulators'] = s['accumulators'] + g * g
    return w - lr * g / np.sqrt(s['accumulators']), s
  if isinstance(optimizer, E.AdagradMomentum):
    b2 = optimizer.beta2
    if b2 == 1.0:
      s['accumulators'] = s['accumulators'] + g * g
    else:
      s['accumulators'] = b2 * s['accumulators'] + (1 - b2) * g * g
    scaled = g * (s['accumulators'] + optimizer.epsilon)**(
        -1.0 / optimizer.exponent)
    s['momenta'] = optimizer.momentum * s['momenta'] + scaled
    if optimizer.use_nesterov:
      update = optimizer.momentum * s['momenta'] + scaled
    else:
      update = s['momenta']
    return w - lr * update, s
  if isinstance(optimizer, E.Adam):
    b1, b2, eps = optimizer.beta_1, optimizer.beta_2, optimizer.epsilon
    s['momenta'] = b1 * s['momenta'] + (1 - b1) * g
    s['velocities'] = b2 * s['velocities'] + (1 - b2) * g * g
    if optimizer.sum_inside_sqrt:
      denominator = np.sqrt(s['velocities'] + eps * eps)
    else:
      denominator = np.sqrt(s['velocities']) + eps
    return w - lr * s['momenta'] / denominator, s
  if isinstance(optimizer, E.FTRL):
    p = -optimizer.learning_rate_power
    l1 = optimizer.l1_regularization_strength
    l2 = optimizer.l2_regularization_strength
    beta = optimizer.beta
    old = s['accumulators']
    new = old + g * g
    sigma = new**p - old**p
    if optimizer.multiply_linear_by_learning_rate:
      linear = s['linears'] + lr * g - sigma * w
      quadratic = new**p + beta + 2 * lr * l2
      threshold = lr * l1
    else:
      linear = s['linears'] + g - sigma / lr * w
      quadratic = (new**p + beta) / lr + 2 * l2
      threshold = l1
    w = np.where(
        np.abs(linear) > threshold,
        (np.sign(linear) * threshold - linear) / quadratic, 0.0)
    s['accumulators'], s['linears'] = new, linear
    return w, s
  raise AssertionError(optimizer)


def _np_step(optimizer, table, slots, ids, values, lr):
  """One apply_gradients of the TPU, on full float64 arrays."""
  table, slots = table.copy(), {k: v.copy() for k, v in slots.items()}
  summed = np.zeros_like(table)
  np.add.at(summed, ids, values)
  if isinstance(optimizer, E.Adam) and not optimizer.lazy_adam:
    rows = np.arange(table.shape[0])
  else:
    rows = np.unique(ids)
  g = summed[rows]
  if optimizer.clip_gradient_min is not None:
    g = np.maximum(g, optimizer.clip_gradient_min)
  if optimizer.clip_gradient_max is not None:
    g = np.minimum(g, optimizer.clip_gradient_max)
  w = table[rows]
  if optimizer.weight_decay_factor:
    decay = optimizer.weight_decay_factor
    if optimizer.multiply_weight_decay_factor_by_learning_rate:
      decay *= lr
    w = w - decay * w
  w, new_slots = _np_rule(optimizer, w, {k: v[rows] for k, v in slots.items()},
                          g, lr)
  if optimizer.clip_weight_min is not None:
    w = np.maximum(w, optimizer.clip_weight_min)
  if optimizer.clip_weight_max is not None:
    w = np.minimum(w, optimizer.clip_weight_max)
  table[rows] = w
  for name, value in new_slots.items():
    slots[name][rows] = value
  return table, slots


_OPTIMIZERS = {
    'sgd': lambda lr: E.SGD(lr),
    'sgd_clip_decay': lambda lr: E.SGD(
        lr, clipvalue=0.3, clip_weight_min=-0.6, clip_weight_max=0.5,
        weight_decay_factor=0.1,
        multiply_weight_decay_factor_by_learning_rate=True),
    'adagrad': lambda lr: E.Adagrad(lr, initial_accumulator_value=0.2),
    'adagrad_clip_decay': lambda lr: E.Adagrad(
        lr, clipvalue=(-0.2, 0.4), weight_decay_factor=0.05),
    'adagrad_momentum': lambda lr: E.AdagradMomentum(
        lr, momentum=0.9, beta2=0.99, exponent=2.0, epsilon=1e-3),
    'adagrad_momentum_nesterov': lambda lr: E.AdagradMomentum(
        lr, momentum=0.5, use_nesterov=True, beta2=1.0, exponent=4.0,
        epsilon=1e-2),
    'adam_lazy': lambda lr: E.Adam(lr, beta_1=0.8, beta_2=0.9, epsilon=1e-3),
    'adam_lazy_eps_outside': lambda lr: E.Adam(
        lr, beta_1=0.8, beta_2=0.9, epsilon=1e-2, sum_inside_sqrt=False),
    'adam_dense': lambda lr: E.Adam(
        lr, beta_1=0.7, beta_2=0.95, epsilon=1e-3, lazy_adam=False),
    'ftrl': lambda lr: E.FTRL(
        lr, learning_rate_power=-0.5, l1_regularization_strength=0.01,
        l2_regularization_strength=0.02, beta=0.1,
        initial_accumulator_value=0.3),
    'ftrl_multiply_linear': lambda lr: E.FTRL(
        lr, learning_rate_power=-0.3, l1_regularization_strength=0.02,
        l2_regularization_strength=0.05, beta=0.2,
        multiply_linear_by_learning_rate=True, allow_zero_accumulator=True,
        clip_weight_max=0.4),
}


def _randomize(embedding, rng):
  """Gives the table and its slots random, valid starting values."""
  table = embedding.trainable_variables[0]
  table.assign(rng.normal(size=(VOCAB, DIM)).astype(np.float32) * 0.5)
  for name, var in embedding.slot_variables(embedding.tables[0]).items():
    if name in ('accumulators', 'velocities'):
      value = rng.uniform(0.1, 1.0, size=(VOCAB, DIM))
    else:
      value = rng.normal(size=(VOCAB, DIM)) * 0.1
    var.assign(value.astype(np.float32))


def _state(embedding):
  """The table and slots as float64 arrays."""
  table = embedding.trainable_variables[0].numpy().astype(np.float64)
  slots = {
      name: var.numpy().astype(np.float64)
      for name, var in embedding.slot_variables(embedding.tables[0]).items()
  }
  return table, slots


def _make_embedding(optimizer):
  table = E.TableConfig(vocabulary_size=VOCAB, dim=DIM, name='table')
  return cpu_embedding.CpuEmbedding(
      {'feature': E.FeatureConfig(table=table)}, optimizer)


@pytest.mark.parametrize('use_function', [False, True])
@pytest.mark.parametrize('name', sorted(_OPTIMIZERS))
def test_steps_match_numpy_reference(name, use_function):
  step = tf.Variable(0.0)
  optimizer = _OPTIMIZERS[name](lambda: 0.2 / (1.0 + step))
  embedding = _make_embedding(optimizer)
  rng = np.random.default_rng(7)
  _randomize(embedding, rng)
  table, slots = _state(embedding)
  initial_table, initial_slots = table.copy(), {
      k: v.copy() for k, v in slots.items()
  }

  def apply(gradient):
    embedding.apply_gradients([gradient])

  if use_function:
    apply = tf.function(apply)
  for t in range(STEPS):
    ids = rng.integers(0, TOUCHABLE, size=BATCH_IDS)
    ids[1] = ids[0]  # A duplicate id in every batch.
    values = rng.normal(size=(BATCH_IDS, DIM))
    apply(
        tf.IndexedSlices(
            tf.constant(values, tf.float32), tf.constant(ids, tf.int64),
            tf.constant([VOCAB, DIM], tf.int64)))
    table, slots = _np_step(optimizer, table, slots, ids, values, 0.2 / (1 + t))
    step.assign_add(1.0)

  got_table, got_slots = _state(embedding)
  np.testing.assert_allclose(got_table, table, rtol=2e-5, atol=2e-6)
  assert got_slots.keys() == slots.keys()
  for slot_name in slots:
    np.testing.assert_allclose(
        got_slots[slot_name], slots[slot_name], rtol=2e-5, atol=2e-6)
  cold = slice(TOUCHABLE, VOCAB)
  if tpu_update_rules.is_dense(optimizer):
    assert not np.allclose(got_table[cold], initial_table[cold])
  else:
    np.testing.assert_array_equal(got_table[cold], initial_table[cold])
    for slot_name in slots:
      np.testing.assert_array_equal(got_slots[slot_name][cold],
                                    initial_slots[slot_name][cold])


def test_duplicate_ids_are_summed_before_the_update():
  embedding = _make_embedding(E.Adagrad(0.5, initial_accumulator_value=0.1))
  other = _make_embedding(E.Adagrad(0.5, initial_accumulator_value=0.1))
  other.trainable_variables[0].assign(embedding.trainable_variables[0])
  embedding.apply_gradients([
      tf.IndexedSlices(
          tf.constant([[1.0, 2.0, 3.0], [0.5, -1.0, 1.0]]),
          tf.constant([4, 4]))
  ])
  other.apply_gradients(
      [tf.IndexedSlices(tf.constant([[1.5, 1.0, 4.0]]), tf.constant([4]))])
  np.testing.assert_allclose(embedding.trainable_variables[0].numpy(),
                             other.trainable_variables[0].numpy())
  np.testing.assert_allclose(
      embedding.slot_variables('table')['accumulators'].numpy()[4],
      [0.1 + 1.5**2, 0.1 + 1.0, 0.1 + 16.0], rtol=1e-6)


def test_learning_rate_callable_called_once_per_apply():
  calls = []

  def learning_rate():
    calls.append(1)
    return 0.1

  optimizer = E.SGD(learning_rate)
  tables = [E.TableConfig(VOCAB, DIM, name=f't{i}') for i in range(2)]
  embedding = cpu_embedding.CpuEmbedding(
      [E.FeatureConfig(table=table) for table in tables], optimizer)
  gradient = tf.IndexedSlices(tf.ones([1, DIM]), tf.constant([0]))
  embedding.apply_gradients({'t0': gradient, tables[1]: gradient})
  embedding.apply_gradients([gradient, None])
  assert len(calls) == 2


def test_float_learning_rate_and_untouched_table():
  tables = [E.TableConfig(VOCAB, DIM, name=f't{i}') for i in range(2)]
  embedding = cpu_embedding.CpuEmbedding(
      [E.FeatureConfig(table=table) for table in tables], E.SGD(0.5))
  before = [var.numpy() for var in embedding.trainable_variables]
  embedding.apply_gradients(
      {'t0': tf.IndexedSlices(tf.ones([1, DIM]), tf.constant([3]))})
  after = [var.numpy() for var in embedding.trainable_variables]
  np.testing.assert_allclose(after[0][3], before[0][3] - 0.5)
  np.testing.assert_array_equal(np.delete(after[0], 3, 0),
                                np.delete(before[0], 3, 0))
  np.testing.assert_array_equal(after[1], before[1])


def test_bias_corrected_learning_rate():
  step = tf.Variable(0)
  rate = tpu_update_rules.bias_corrected_learning_rate(0.1, 0.9, 0.999, step)
  np.testing.assert_allclose(rate().numpy(), 0.1 * np.sqrt(0.001) / 0.1,
                             rtol=1e-5)
  step.assign(2)
  np.testing.assert_allclose(rate().numpy(),
                             0.1 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3),
                             rtol=1e-5)


def test_ftrl_with_weight_decay_is_rejected():
  with pytest.raises(NotImplementedError, match='weight_decay_factor'):
    _make_embedding(E.FTRL(0.1, weight_decay_factor=0.1))


def test_dense_gradient_is_rejected():
  embedding = _make_embedding(E.SGD(0.1))
  with pytest.raises(TypeError, match='IndexedSlices'):
    embedding.apply_gradients([tf.zeros([VOCAB, DIM])])


def test_gradient_without_optimizer_is_rejected():
  embedding = _make_embedding(None)
  assert not embedding.slot_variables('table')
  with pytest.raises(ValueError, match='no optimizer'):
    embedding.apply_gradients(
        [tf.IndexedSlices(tf.ones([1, DIM]), tf.constant([0]))])


def test_unknown_table_and_wrong_length_are_rejected():
  embedding = _make_embedding(E.SGD(0.1))
  gradient = tf.IndexedSlices(tf.ones([1, DIM]), tf.constant([0]))
  with pytest.raises(ValueError, match='Unknown embedding table'):
    embedding.apply_gradients({'nope': gradient})
  with pytest.raises(ValueError, match='Expected 1 gradients'):
    embedding.apply_gradients([gradient, gradient])
