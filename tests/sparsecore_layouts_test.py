"""A SparseCore (V2) checkpoint's stacked tables restore into serving tables.

No TPU here: the checkpoint is written by a stand-in holding what TensorFlow
2.16's ``TPUEmbeddingV2`` keeps about its stacking, and its stacked variables
laid out as that class places rows (``_stacked``, written from its lookup's id
mapping, independently of the product's code).
"""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.tpu import tpu_embedding_v3_utils
from tensorflow.python.trackable import base as trackable_base

from components.trainer import backends
from components.trainer import engines
from components.trainer import export
from components.trainer import sparsecore_layouts

NUM_SPARSE_CORES = 16  # 4 chips x 4 SparseCores.
_embedding = tf.tpu.experimental.embedding

# name: (rows, dim, padded rows, padded dim, stack, offset, rotation). Rows
# are padded to a multiple of 8 x 16 SparseCores, widths to a multiple of 8;
# 'a' and 'b' share a width and so a stack, 'b' rotated by one chip's cores.
TABLES = {
    'a': (50, 6, 128, 8, 'a_b', 0, 0),
    'b': (170, 6, 256, 8, 'a_b', 128, 4),
    'c': (30, 16, 128, 16, 'c', 0, 0),
}


def _stacked(values):
  """Each stack as V2 saves it: SparseCore blocks one after the other; row i
  of a table on core (i + rotation) % S at offset / S + i // S; padding
  rows and columns hold junk."""
  rng = np.random.default_rng(7)
  stacks = {}
  for stack in sorted({t[4] for t in TABLES.values()}):
    members = [name for name, t in TABLES.items() if t[4] == stack]
    padded_dim = TABLES[members[0]][3]
    rows_per_core = sum(TABLES[m][2] for m in members) // NUM_SPARSE_CORES
    stacked = rng.normal(size=(NUM_SPARSE_CORES * rows_per_core, padded_dim))
    for name in members:
      rows, dim, _, _, _, offset, rotation = TABLES[name]
      for row in range(rows):
        core = (row + rotation) % NUM_SPARSE_CORES
        position = offset // NUM_SPARSE_CORES + row // NUM_SPARSE_CORES
        stacked[core * rows_per_core + position, :dim] = values[name][row]
    stacks[stack] = stacked.astype(np.float32)
  return stacks


class _V2StandIn(trackable_base.Trackable):
  """TensorFlow 2.16's TPUEmbeddingV2 as far as its checkpoint goes."""

  def __init__(self):
    self._num_sc_shards = NUM_SPARSE_CORES
    self._stacked_table_to_tables = {}
    self._table_to_stacked_table_offset = {}
    self._table_to_padding_rows = {}
    self._table_to_padding_columns = {}
    for name, (rows, dim, padded_rows, padded_dim, stack, offset,
               rotation) in TABLES.items():
      self._stacked_table_to_tables.setdefault(stack, []).append(
          _embedding.TableConfig(vocabulary_size=padded_rows, dim=padded_dim,
                                 name=name))
      self._table_to_stacked_table_offset[name] = (stack, offset, rotation)
      self._table_to_padding_rows[name] = padded_rows - rows
      self._table_to_padding_columns[name] = padded_dim - dim

  def track_stacks(self, stacks):
    for stack, value in stacks.items():
      self._track_trackable(tf.Variable(value), stack)
      # An optimizer slot, as training checkpoints hold; serving ignores it.
      self._track_trackable(tf.Variable(tf.ones_like(value)),
                            f'{stack}/accumulators')


def _feature_config(names=tuple(TABLES)):
  return {name: _embedding.FeatureConfig(
      table=_embedding.TableConfig(vocabulary_size=TABLES[name][0],
                                   dim=TABLES[name][1], name=name),
      name=name) for name in names}


def _v2_checkpoint(tmp_path, seed):
  """A checkpoint as a V2 training writes it, with the layouts recorded;
  the tables' values."""
  rng = np.random.default_rng(seed)
  values = {name: rng.normal(size=t[:2]).astype(np.float32)
            for name, t in TABLES.items()}
  stand_in = _V2StandIn()
  sparsecore_layouts.record_for_serving(stand_in)
  stand_in.track_stacks(_stacked(values))
  return (tf.train.Checkpoint(embedding=stand_in).save(str(tmp_path / 'ckpt')),
          values)


def test_v2_checkpoint_restores_one_table_each(tmp_path):
  path, values = _v2_checkpoint(tmp_path, seed=0)
  tables = export.restore_tables(_feature_config(), path)
  restored = {table.name: variable.numpy()
              for table, variable in tables.embedding_tables.items()}
  assert sorted(restored) == sorted(TABLES)
  for name, value in values.items():
    np.testing.assert_array_equal(restored[name], value, err_msg=name)
  # The serving lookups read the restored rows.
  ids = {'a': [49, 0], 'b': [169, 5], 'c': [29, 8]}
  looked_up = tables({name: tf.constant(rows, tf.int64)
                      for name, rows in ids.items()})
  for name, rows in ids.items():
    np.testing.assert_array_equal(looked_up[name], values[name][rows])


def test_the_training_path_check_reads_the_same_tables(tmp_path):
  """`verify` restores the training backend's embedding (with an optimizer)
  before its first lookup: the stacked tables are split there too."""
  path, values = _v2_checkpoint(tmp_path, seed=1)
  backend = backends.CpuBackend(_feature_config(), _embedding.Adagrad(0.1))
  tf.train.Checkpoint(embedding=backend.embedding).restore(
      path).expect_partial()
  ids = {'a': [3, 41], 'b': [164, 1], 'c': [0, 17]}
  looked_up = backend.embedding({name: tf.constant(rows, tf.int64)
                                 for name, rows in ids.items()})
  for name, rows in ids.items():
    np.testing.assert_array_equal(looked_up[name], values[name][rows])


def test_layouts_are_read_from_the_stacking():
  layouts = {layout.table_name: layout for layout in
             sparsecore_layouts.layouts_of(_V2StandIn())}
  assert layouts['b'] == sparsecore_layouts.TableLayout(
      table_name='b', stacked_table_name='a_b', shape=(170, 6),
      padded_shape=(256, 8), stack_row_offset=128, rotation=4,
      num_sparse_cores=NUM_SPARSE_CORES)
  proto = sparsecore_layouts.to_proto(list(layouts.values()))
  (b,) = [t for t in proto.tables if t.table_name == 'b']
  assert (b.sparse_core_shard_row_offset, b.total_rows_per_sparse_core_shard,
          list(b.unsharded_padded_shape)) == (8, 24, [256, 8])


def test_misaligned_layouts_are_refused():
  with pytest.raises(ValueError, match='multiples of the 16 SparseCores'):
    sparsecore_layouts.TableLayout('t', 't', (10, 8), (12, 8), 0, 0,
                                   NUM_SPARSE_CORES)


def test_a_version_that_records_layouts_itself_is_left_alone():
  class _Newer(_V2StandIn):
    def _track_restore_info_for_cpu(self):
      pass

  newer = _Newer()
  sparsecore_layouts.record_for_serving(newer)
  assert (tpu_embedding_v3_utils.SPARSECORE_LAYOUTS_CHECKPOINT_KEY not in
          newer._trackable_children())  # pylint: disable=protected-access


def test_a_v2_checkpoint_without_layouts_is_refused(tmp_path):
  """Without layouts the stacked values cannot be split: no random tables
  are served. (A table alone in its stack has its own name but a padded
  shape: TensorFlow refuses that shape.)"""
  stand_in = _V2StandIn()
  stand_in.track_stacks(_stacked({name: np.zeros(t[:2], np.float32)
                                  for name, t in TABLES.items()}))
  path = tf.train.Checkpoint(embedding=stand_in).save(str(tmp_path / 'ckpt'))
  with pytest.raises(ValueError, match=r"no values for the tables \['a', 'b'\]"):
    export.restore_tables(_feature_config(['a', 'b']), path)


def test_the_trainer_builds_v2_with_its_layouts_recorded(monkeypatch):
  built = []

  def v2_class(**arguments):
    del arguments
    built.append(_V2StandIn())
    return built[-1]

  monkeypatch.setattr(_embedding, 'TPUEmbeddingV2', v2_class)
  tables = _feature_config()
  assert engines.build_embedding('v2', tables, _embedding.Adagrad(0.1),
                                 16) is built[0]
  assert (tpu_embedding_v3_utils.SPARSECORE_LAYOUTS_CHECKPOINT_KEY in
          built[0]._trackable_children())  # pylint: disable=protected-access


def test_stack_places_rows_as_v2_and_unstack_takes_them_back():
  rng = np.random.default_rng(2)
  values = {name: rng.normal(size=t[:2]).astype(np.float32)
            for name, t in TABLES.items()}
  expected = _stacked(values)
  stacks = sparsecore_layouts.by_stack(
      sparsecore_layouts.layouts_of(_V2StandIn()))
  assert list(stacks['a_b']) and [l.table_name for l in stacks['a_b']] == [
      'a', 'b']
  for stack_name, layouts in stacks.items():
    stacked = sparsecore_layouts.stack(values, layouts)
    # The same rows where V2 puts them (the padding differs: zeros here).
    for layout in layouts:
      np.testing.assert_array_equal(
          sparsecore_layouts.unstack(stacked, layout),
          values[layout.table_name])
      np.testing.assert_array_equal(
          sparsecore_layouts.unstack(expected[stack_name], layout),
          values[layout.table_name])
    assert stacked.shape == expected[stack_name].shape
    real = sparsecore_layouts.stack(
        {name: np.ones_like(v) for name, v in values.items()}, layouts) == 1
    np.testing.assert_array_equal(stacked[real], expected[stack_name][real])
