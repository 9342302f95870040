"""The SparseCore layouts of V2 tables: from stacked variables to one table each.

``TPUEmbeddingV2`` (SparseCore: TPU v5p, v6e) does not keep one variable per
table. It pads each table's rows to a multiple of 8 x the slice's SparseCores
(``S``) and its width to a multiple of 8, stacks the tables of the same width
and optimizer into one variable, and shards the stacked rows over the
SparseCores: row ``i`` of a table starting at row ``offset`` of its stack sits
on SparseCore ``(i + rotation) % S``, at position ``offset / S + i // S`` of
that SparseCore's block. Its checkpoints hold these stacked variables (and
their optimizer slots, laid out alike), SparseCore block after block.

* Export: ``TPUEmbeddingForServing``, and so ``CpuEmbedding``, splits them
  into one table each when the checkpoint also holds every table's layout (a
  ``SparseCoreTableLayouts`` proto under ``_sparse_core_table_layouts``) and is
  restored before the tables are built (``export.restore_tables``). TensorFlow
  2.17+ writes the layouts itself; TensorFlow 2.16 does not, so
  ``record_for_serving`` writes them from that version's stacking.
* Warm start: a base model's stacked values are split with ``unstack``, and a
  V2 run's remapped tables are stacked back with ``stack``
  (``write_stacked_checkpoint``).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.tpu.kernels import sparse_core_layout_pb2
from tensorflow.python.tpu import tpu_embedding_v3_utils
from tensorflow.python.trackable import base as trackable_base

LAYOUTS_KEY = tpu_embedding_v3_utils.SPARSECORE_LAYOUTS_CHECKPOINT_KEY


@dataclasses.dataclass(frozen=True)
class TableLayout:
  """Where one table sits in its stacked, sharded V2 variable.

  Attributes:
    table_name: the table's name (``TableConfig.name``).
    stacked_table_name: the stacked variable's name (its tables' names
      joined by '_').
    shape: the table's rows and width as configured.
    padded_shape: its rows and width after V2's padding.
    stack_row_offset: its first row in the unsharded stacked variable (a
      multiple of the SparseCores, as every padded table's rows are).
    rotation: the SparseCore of its row 0.
    num_sparse_cores: the SparseCores of the slice.
  """
  table_name: str
  stacked_table_name: str
  shape: Sequence[int]
  padded_shape: Sequence[int]
  stack_row_offset: int
  rotation: int
  num_sparse_cores: int

  def __post_init__(self):
    cores = self.num_sparse_cores
    if self.stack_row_offset % cores or self.padded_shape[0] % cores:
      raise ValueError(
          f'Table {self.table_name!r}: offset {self.stack_row_offset} and '
          f'padded rows {self.padded_shape[0]} must be multiples of the '
          f'{cores} SparseCores.')

  @property
  def rows_per_core(self) -> int:
    return self.padded_shape[0] // self.num_sparse_cores

  @property
  def first_position(self) -> int:
    """Its first row's position in each SparseCore's block."""
    return self.stack_row_offset // self.num_sparse_cores

  @classmethod
  def from_proto(cls, proto: Any) -> 'TableLayout':
    return cls(table_name=proto.table_name,
               stacked_table_name=proto.stacked_table_name,
               shape=tuple(proto.unsharded_shape),
               padded_shape=tuple(proto.unsharded_padded_shape),
               stack_row_offset=(proto.sparse_core_shard_row_offset *
                                 proto.num_sparse_cores),
               rotation=proto.sparse_core_shard_rotation,
               num_sparse_cores=proto.num_sparse_cores)


def by_stack(layouts: Sequence[TableLayout]) -> Dict[str, List[TableLayout]]:
  """The layouts grouped by stacked variable, in stacking order."""
  stacks = {}
  for layout in sorted(layouts, key=lambda l: l.stack_row_offset):
    stacks.setdefault(layout.stacked_table_name, []).append(layout)
  return stacks


def to_proto(layouts: Sequence[TableLayout]
            ) -> sparse_core_layout_pb2.SparseCoreTableLayouts:
  """The ``SparseCoreTableLayouts`` that ``TPUEmbeddingForServing`` reads."""
  proto = sparse_core_layout_pb2.SparseCoreTableLayouts()
  for stack in by_stack(layouts).values():
    rows_per_core = sum(layout.rows_per_core for layout in stack)
    for layout in stack:
      proto.tables.add(
          table_name=layout.table_name,
          stacked_table_name=layout.stacked_table_name,
          num_sparse_cores=layout.num_sparse_cores,
          num_partitions=layout.num_sparse_cores,
          total_rows_per_sparse_core_shard=rows_per_core,
          unsharded_shape=list(layout.shape),
          unsharded_padded_shape=list(layout.padded_shape),
          sparse_core_shard_row_offset=layout.first_position,
          sparse_core_shard_rotation=layout.rotation)
  return proto


def layouts_of(embedding: Any) -> List[TableLayout]:
  """The layouts of a ``TPUEmbeddingV2``'s tables.

  TensorFlow 2.17+ gives them (``embedding_layouts``); 2.16's are read from
  its stacking (``_stacked_table_to_tables``,
  ``_table_to_stacked_table_offset``) and padding (``_table_to_padding_rows``
  / ``_columns``), its table configs holding the padded sizes.
  """
  if hasattr(embedding, 'embedding_layouts'):
    return [TableLayout.from_proto(proto)
            for proto in embedding.embedding_layouts.values()]
  layouts = []
  for stacked_name, tables in embedding._stacked_table_to_tables.items():  # pylint: disable=protected-access
    for table in tables:
      _, offset, rotation = embedding._table_to_stacked_table_offset[  # pylint: disable=protected-access
          table.name]
      extra_rows = embedding._table_to_padding_rows[table.name]  # pylint: disable=protected-access
      extra_columns = embedding._table_to_padding_columns[table.name]  # pylint: disable=protected-access
      layouts.append(TableLayout(
          table_name=table.name, stacked_table_name=stacked_name,
          shape=(table.vocabulary_size - extra_rows, table.dim - extra_columns),
          padded_shape=(table.vocabulary_size, table.dim),
          stack_row_offset=offset, rotation=rotation,
          num_sparse_cores=embedding._num_sc_shards))  # pylint: disable=protected-access
  return layouts


def record_for_serving(embedding: Any) -> None:
  """Makes a ``TPUEmbeddingV2``'s checkpoints carry its tables' layouts.

  Call it before its first checkpoint; a TensorFlow whose ``TPUEmbeddingV2``
  records them itself (2.17+) is left alone.
  """
  if hasattr(type(embedding), '_track_restore_info_for_cpu'):
    return
  proto = to_proto(layouts_of(embedding))
  with tf.device('/cpu:0'):
    embedding._track_trackable(  # pylint: disable=protected-access
        tpu_embedding_v3_utils.SparseCoreLayoutsTrackable(
            tf.constant(proto.SerializeToString(), dtype=tf.string)),
        LAYOUTS_KEY)


def layouts_in(reader: Any, layouts_key: str) -> Dict[str, TableLayout]:
  """{table: layout} recorded in a checkpoint (``reader``:
  ``tf.train.load_checkpoint``; ``layouts_key``: the layouts' key in it);
  empty when it records none."""
  if not reader.has_tensor(layouts_key):
    return {}
  proto = sparse_core_layout_pb2.SparseCoreTableLayouts()
  proto.ParseFromString(reader.get_tensor(layouts_key))
  return {table.table_name: TableLayout.from_proto(table)
          for table in proto.tables}


def unstack(stacked: np.ndarray, layout: TableLayout) -> np.ndarray:
  """One table's rows and columns out of its stack's value (a table or an
  optimizer slot), with TensorFlow's own SparseCore unshuffle."""
  table = tpu_embedding_v3_utils.unshuffle_from_sc_to_cpu(
      tf.constant(stacked), layout.num_sparse_cores, layout.first_position,
      layout.rows_per_core, layout.rotation)
  rows, dim = layout.shape
  return table.numpy()[:rows, :dim]


def stack(tables: Mapping[str, np.ndarray],
          layouts: Sequence[TableLayout]) -> np.ndarray:
  """One stacked variable's value from its tables' values, rows placed as
  V2 places them; padding rows and columns hold zeros."""
  cores = layouts[0].num_sparse_cores
  width = layouts[0].padded_shape[1]
  first = tables[layouts[0].table_name]
  blocks = np.zeros((cores, sum(l.rows_per_core for l in layouts), width),
                    first.dtype)
  for layout in layouts:
    padded = np.zeros(layout.padded_shape, first.dtype)
    rows, dim = layout.shape
    padded[:rows, :dim] = tables[layout.table_name]
    # [position, i % S] -> [SparseCore (i + rotation) % S, position].
    by_core = np.roll(padded.reshape(layout.rows_per_core, cores, width),
                      layout.rotation, axis=1).transpose(1, 0, 2)
    blocks[:, layout.first_position:
           layout.first_position + layout.rows_per_core] = by_core
  return blocks.reshape(-1, width)


def stacked_values(values: Mapping[str, Mapping[str, np.ndarray]],
                   layouts: Sequence[TableLayout]) -> Dict[str, np.ndarray]:
  """{``<stack>`` or ``<stack>/<slot>``: value}, as a V2 embedding names its
  variables, from ``values`` ({table: {'parameters' or slot: value}})."""
  stacked = {}
  for stacked_name, stack_layouts in by_stack(layouts).items():
    names = [layout.table_name for layout in stack_layouts]
    for variable in values[names[0]]:
      key = (stacked_name if variable == 'parameters' else
             f'{stacked_name}/{variable}')
      stacked[key] = stack({name: values[name][variable] for name in names},
                           stack_layouts)
  return stacked


def write_stacked_checkpoint(
    values: Mapping[str, Mapping[str, np.ndarray]],
    layouts: Sequence[TableLayout], path: str) -> str:
  """Writes ``stacked_values`` under ``embedding``, where a V2 embedding's
  deferred restore finds them; returns the checkpoint's path."""
  holder = trackable_base.Trackable()
  for name, value in stacked_values(values, layouts).items():
    holder._track_trackable(tf.Variable(value), name)  # pylint: disable=protected-access
  return tf.train.Checkpoint(embedding=holder).write(path)
