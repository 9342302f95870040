"""The SparseCore layouts of a V2 checkpoint's tables, so serving can read them.

``TPUEmbeddingV2`` (SparseCore: TPU v5p, v6e) does not keep one variable per
table. It pads each table's rows to a multiple of 8 x the slice's SparseCores
(``S``) and its width to a multiple of 8, stacks the tables of the same width
and optimizer into one variable, and shards the stacked rows over the
SparseCores: row ``i`` of a table starting at row ``offset`` of its stack sits
on SparseCore ``(i + rotation) % S``, at position ``offset / S + i // S`` of
that SparseCore's block. A training checkpoint holds these stacked variables,
SparseCore block after block.

``TPUEmbeddingForServing``, and so ``CpuEmbedding``, turns them back into one
table each when the checkpoint also holds every table's layout (a
``SparseCoreTableLayouts`` proto under ``_sparse_core_table_layouts``) and is
restored before the tables are built (``export.restore_tables``). TensorFlow
2.17+ writes the layouts itself. TensorFlow 2.16's ``TPUEmbeddingV2`` does
not: ``record_for_serving`` writes them from its stacking, read from that
version's private attributes (``layouts_of``).
"""

import dataclasses
from typing import Any, Dict, List, Sequence, Tuple

import tensorflow as tf
from tensorflow.core.tpu.kernels import sparse_core_layout_pb2
from tensorflow.python.tpu import tpu_embedding_v3_utils


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
  """
  table_name: str
  stacked_table_name: str
  shape: Tuple[int, int]
  padded_shape: Tuple[int, int]
  stack_row_offset: int
  rotation: int


def to_proto(layouts: Sequence[TableLayout], num_sparse_cores: int
            ) -> sparse_core_layout_pb2.SparseCoreTableLayouts:
  """The ``SparseCoreTableLayouts`` that ``TPUEmbeddingForServing`` reads."""
  stacked_rows = {}
  for layout in layouts:
    stacked_rows[layout.stacked_table_name] = (
        stacked_rows.get(layout.stacked_table_name, 0) +
        layout.padded_shape[0])
  proto = sparse_core_layout_pb2.SparseCoreTableLayouts()
  for layout in layouts:
    if (layout.stack_row_offset % num_sparse_cores or
        layout.padded_shape[0] % num_sparse_cores):
      raise ValueError(
          f'Table {layout.table_name!r}: offset {layout.stack_row_offset} and '
          f'padded rows {layout.padded_shape[0]} must be multiples of the '
          f'{num_sparse_cores} SparseCores.')
    proto.tables.add(
        table_name=layout.table_name,
        stacked_table_name=layout.stacked_table_name,
        num_sparse_cores=num_sparse_cores,
        num_partitions=num_sparse_cores,
        total_rows_per_sparse_core_shard=(
            stacked_rows[layout.stacked_table_name] // num_sparse_cores),
        unsharded_shape=list(layout.shape),
        unsharded_padded_shape=list(layout.padded_shape),
        sparse_core_shard_row_offset=(
            layout.stack_row_offset // num_sparse_cores),
        sparse_core_shard_rotation=layout.rotation)
  return proto


def layouts_of(embedding: Any) -> List[TableLayout]:
  """The layouts of a TensorFlow 2.16 ``TPUEmbeddingV2``'s tables.

  Read from its stacking (``_stacked_table_to_tables``,
  ``_table_to_stacked_table_offset``) and padding
  (``_table_to_padding_rows`` / ``_columns``); its table configs hold the
  padded sizes.
  """
  layouts = []
  for stacked_name, tables in embedding._stacked_table_to_tables.items():  # pylint: disable=protected-access
    for table in tables:
      stacked, offset, rotation = (
          embedding._table_to_stacked_table_offset[table.name])  # pylint: disable=protected-access
      assert stacked == stacked_name, (stacked, stacked_name)
      extra_rows = embedding._table_to_padding_rows[table.name]  # pylint: disable=protected-access
      extra_columns = embedding._table_to_padding_columns[table.name]  # pylint: disable=protected-access
      layouts.append(TableLayout(
          table_name=table.name, stacked_table_name=stacked_name,
          shape=(table.vocabulary_size - extra_rows, table.dim - extra_columns),
          padded_shape=(table.vocabulary_size, table.dim),
          stack_row_offset=offset, rotation=rotation))
  return layouts


def records_layouts_itself(embedding: Any) -> bool:
  """Whether this TensorFlow's ``TPUEmbeddingV2`` writes the layouts into its
  checkpoints (2.17+)."""
  return hasattr(type(embedding), '_track_restore_info_for_cpu')


def record_for_serving(embedding: Any) -> None:
  """Makes ``embedding``'s checkpoints carry its tables' layouts.

  Call it on a ``TPUEmbeddingV2`` before its first checkpoint; a version that
  records them itself is left alone.
  """
  if records_layouts_itself(embedding):
    return
  proto = to_proto(layouts_of(embedding), embedding._num_sc_shards)  # pylint: disable=protected-access
  with tf.device('/cpu:0'):
    embedding._track_trackable(  # pylint: disable=protected-access
        tpu_embedding_v3_utils.SparseCoreLayoutsTrackable(
            tf.constant(proto.SerializeToString(), dtype=tf.string)),
        tpu_embedding_v3_utils.SPARSECORE_LAYOUTS_CHECKPOINT_KEY)



def stacked_tables_in(reader: Any, layouts_key: str) -> Dict[str, str]:
  """{table: its stacked variable's name} from a checkpoint's recorded
  layouts (``reader``: ``tf.train.load_checkpoint``; ``layouts_key``: the
  layouts' key in it); empty when it records none."""
  if not reader.has_tensor(layouts_key):
    return {}
  proto = sparse_core_layout_pb2.SparseCoreTableLayouts()
  proto.ParseFromString(reader.get_tensor(layouts_key))
  return {layout.table_name: layout.stacked_table_name
          for layout in proto.tables}
