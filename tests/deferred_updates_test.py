"""Deferred updates of large tables: the same tables as immediate updates.

The tables here are small; `MIN_TABLE_BYTES` is lowered so that they are
deferred. The batches share many ids, so most pending rows are read by the
next step and must be applied before its lookup.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components.embedding import deferred_updates
from components.embedding import native_kernels
from components.embedding import tpu_update_rules
from components.trainer import backends
from components.trainer import loop
from components.trainer import tasks

E = tf.tpu.experimental.embedding
ROWS = 300
DIM = 8
BATCH = 16


@pytest.fixture(name='library', autouse=True)
def fixture_library():
  if native_kernels.library() is None:
    pytest.skip('The native kernels could not be built here.')


@pytest.mark.parametrize('num_rows', [1_000, 1 << 24],
                         ids=['bitmap', 'radix_sort'])
def test_partition_splits_the_pending_rows_by_the_next_ids(num_rows):
  rng = np.random.default_rng(0)
  pending = rng.choice(num_rows, 400, replace=False)  # Not sorted.
  next_ids = np.concatenate([rng.choice(pending, 150),
                             rng.integers(0, num_rows, 200), [-1, num_rows]])
  read, unread = native_kernels.partition(tf.constant(pending),
                                          tf.constant(next_ids), num_rows)
  is_read = np.isin(pending, next_ids)
  np.testing.assert_array_equal(read, np.flatnonzero(is_read))
  np.testing.assert_array_equal(unread, np.flatnonzero(~is_read))


def _variables(optimizer, rng):
  table = tf.Variable(rng.normal(size=(ROWS, DIM)).astype(np.float32))
  slots = {name: tf.Variable(rng.uniform(0.1, 0.5, (ROWS, DIM)).astype(
      np.float32)) for name in tpu_update_rules.slot_names(optimizer)}
  return table, slots


@pytest.mark.parametrize('optimizer', [
    E.SGD(0.3), E.Adagrad(0.2), E.Adam(0.1),
    E.FTRL(0.2, l1_regularization_strength=0.05, beta=0.1),
    E.AdagradMomentum(0.1, momentum=0.9)],
                         ids=['sgd', 'adagrad', 'lazy_adam', 'ftrl',
                              'adagrad_momentum'])
def test_an_update_in_two_parts_equals_the_whole(optimizer):
  rng = np.random.default_rng(1)
  ids = tf.constant(np.sort(rng.choice(ROWS, 120, replace=False)))
  grads = tf.constant(rng.normal(size=(120, DIM)).astype(np.float32))
  read, unread = native_kernels.partition(ids, ids[::3], ROWS)
  kernel = tpu_update_rules.fused_kernel(optimizer, native=True)
  whole = _variables(optimizer, np.random.default_rng(2))
  parts = _variables(optimizer, np.random.default_rng(2))
  kernel(optimizer, whole[0], whole[1], ids, grads, tf.constant(0.1))
  kernel(optimizer, parts[0], parts[1], ids, grads, tf.constant(0.1), read)
  kernel(optimizer, parts[0], parts[1], ids, grads, tf.constant(0.1), unread)
  np.testing.assert_array_equal(parts[0].numpy(), whole[0].numpy())
  for name, slot in whole[1].items():
    np.testing.assert_array_equal(parts[1][name].numpy(), slot.numpy())


def test_positions_must_increase_within_the_rows():
  table, slots = _variables(E.Adagrad(0.1), np.random.default_rng(3))
  ids = tf.constant([1, 5, 9], tf.int64)
  for positions in ([2, 1], [0, 3], [[0]]):
    with pytest.raises(tf.errors.InvalidArgumentError, match='positions'):
      native_kernels.apply_adagrad(table, slots['accumulators'], ids,
                                   tf.ones([3, DIM]), tf.constant(0.1),
                                   tf.constant(positions, tf.int64))


def _config():
  """Two bags and a sequence on an Adagrad table, a bag on a lazy Adam one."""
  shared = E.TableConfig(vocabulary_size=ROWS, dim=DIM, combiner='mean',
                         name='shared')
  adam = E.TableConfig(vocabulary_size=ROWS, dim=DIM, combiner='sum',
                       optimizer=E.Adam(0.05), name='adam')
  return {'bag': E.FeatureConfig(table=shared),
          'other_bag': E.FeatureConfig(table=shared),
          'sequence': E.FeatureConfig(table=shared, max_sequence_length=3),
          'adam_bag': E.FeatureConfig(table=adam)}


def _batches(count):
  """Batches of ids from 40 rows of 300: consecutive batches share many."""
  rng = np.random.default_rng(4)

  def bag():
    lengths = rng.integers(0, 5, BATCH)
    return tf.RaggedTensor.from_row_lengths(
        rng.integers(0, 40, lengths.sum()), lengths).to_sparse()

  return [({'bag': bag(), 'other_bag': bag(), 'adam_bag': bag(),
            'sequence': tf.ragged.constant(
                [list(rng.integers(0, 40, 2)) for _ in range(BATCH)],
                dtype=tf.int64).to_sparse()},
           {}, {}, tf.constant(rng.integers(0, 2, (BATCH, 1)), tf.float32))
          for _ in range(count)]


class _Tower(tf_keras.Model):

  def __init__(self):
    super().__init__()
    self.dense = tf_keras.layers.Dense(1)

  def call(self, inputs, training=False):
    embeddings = inputs['embeddings']
    parts = [tf.reshape(embeddings[key],
                        [BATCH, int(np.prod(embeddings[key].shape[1:]))])
             for key in sorted(embeddings)]
    return self.dense(tf.concat(parts, axis=1))


class _Losses:

  def add_loss(self, loss):
    del loss


def _train(steps_per_call, min_table_bytes, monkeypatch):
  """Tables and slots after 6 steps, `steps_per_call` steps per call."""
  monkeypatch.setattr(deferred_updates, 'MIN_TABLE_BYTES', min_table_bytes)
  tf_keras.utils.set_random_seed(5)
  backend = backends.CpuBackend(_config(), E.Adagrad(0.2))
  tf_keras.utils.set_random_seed(6)
  run = loop.compile_train_steps(
      backend, _Tower(), tf_keras.optimizers.SGD(0.1),
      tasks.Task(tasks.TaskConfig()), _Losses(),
      tf.Variable(0, dtype=tf.int64))
  batches = _batches(6)
  dataset = tf.data.Dataset.from_tensors(batches[0])
  for batch in batches[1:]:
    dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
  iterator = iter(dataset)
  for _ in range(6 // steps_per_call):
    run(iterator, steps_per_call)
  embedding = backend.embedding
  values = {}
  for table in embedding.tables:
    values[table.name] = embedding.embedding_tables[table].numpy()
    for slot, variable in embedding.slot_variables(table).items():
      values[f'{table.name}/{slot}'] = variable.numpy()
  return embedding._deferred_updates().table_names, values  # pylint: disable=protected-access


@pytest.mark.parametrize('steps_per_call', [1, 3, 6])
def test_deferred_training_equals_immediate_training(steps_per_call,
                                                     monkeypatch):
  """Through the trainer's training function, calls of 1, 3 or 6 steps:
  bit for bit the tables and slots of immediate updates."""
  deferred, got = _train(steps_per_call, 0, monkeypatch)
  immediate, expected = _train(steps_per_call, 1 << 62, monkeypatch)
  assert sorted(deferred) == ['adam', 'shared'] and not immediate
  assert set(got) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_a_training_step_applies_the_pending_rows_in_two_parts(monkeypatch):
  """One step's function: a partition, then per deferred table an update of
  the rows the batch reads and one of the rest, and the flush's update."""
  monkeypatch.setattr(deferred_updates, 'MIN_TABLE_BYTES', 0)
  backend = backends.CpuBackend({'bag': _config()['bag']}, E.Adagrad(0.2))
  step = backend.train_step(_Tower(), tf_keras.optimizers.SGD(0.1),
                            tasks.Task(tasks.TaskConfig()))
  batch = ({'bag': _batches(1)[0][0]['bag']}, {}, {}, tf.zeros([BATCH, 1]))
  iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
  graph = step.get_concrete_function(iterator).graph
  types = [op.type for op in graph.get_operations()]
  assert types.count('EmbeddingRowsPartition') == 1
  assert types.count('EmbeddingRowsApplyAdagrad') == 3
  monkeypatch.setattr(deferred_updates, 'MIN_TABLE_BYTES', 1 << 62)
  backend = backends.CpuBackend({'bag': _config()['bag']}, E.Adagrad(0.2))
  step = backend.train_step(_Tower(), tf_keras.optimizers.SGD(0.1),
                            tasks.Task(tasks.TaskConfig()))
  types = [op.type for op in
           step.get_concrete_function(iterator).graph.get_operations()]
  assert 'EmbeddingRowsPartition' not in types
  assert types.count('EmbeddingRowsApplyAdagrad') == 1
