"""How SparseCore TPUs spread a batch's ids, counted exactly on the data.

SparseCore chips (TPU v5p, v6e; `tf.tpu.experimental.embedding.TPUEmbeddingV2`,
`tensorflow/python/tpu/tpu_embedding_v3.py`) preprocess the ids of every step
on the host into fixed-size buffers. This module reproduces, with NumPy, which
SparseCore partition each id of a batch lands on, so that the buffer limits
can be chosen from the data before any TPU time is spent.

The assignment, as TF 2.16 implements it (sources cited per step):

1. The global batch is split into `chips` equal, consecutive per-chip batches
   (one replica per chip: `tf.distribute` gives replica r the r-th slice).
2. On a chip, the features of one table are laid out one after the other in
   a sample space (`_stack_tables_with_same_table_dim_and_optimizer`:
   `_feature_to_sample_offset` grows by each feature's `output_shape` product,
   features in `nest.flatten` order, i.e. sorted by feature key), and the
   chip's SparseCores take equal consecutive ranges of it:
   SparseCore `s` reads the samples `[s * S / n, (s + 1) * S / n)` of the
   `S` samples, `n` SparseCores per chip (`GetMinibatchSplitsWithPhysicalReplica`
   kernel, `per_sc_sample_count = sample_count / num_sc_per_chip`).
3. Duplicate ids within one sample are merged (the kernel sorts each
   SparseCore's ids by (id, sample) and counts an id once per sample).
4. Every table is mod-sharded over all `N = chips * n` SparseCores: row `i`
   lives on partition `(i + shift) % N` (`_convert_input_feature_to_coo`:
   `(col + col_shift) % num_sc_shards + ...`, with `col_shift =
   num_sc_per_chip * index of the table in its stack` and row offsets of
   stacked tables that are multiples of `8 * N` after `_round_table_sizes`).
   A shift only renames partitions, so per-table counts over all partitions
   do not depend on it: this module uses `i % N`.
5. The limits apply per (SparseCore, partition) pair: `max_ids_per_partition`
   to the ids one SparseCore sends to one partition in one minibatch,
   `max_unique_ids_per_partition` to the distinct ids among them (the kernel's
   `total_id_counter` / `total_unique_id_counter`, indexed by
   `col_id % num_physical_replica`). Above them the batch is split into
   minibatches (at most `max_minibatches_per_sc`) or ids are dropped.
6. Per chip and (stacked) table, at most `max_ids_per_chip_per_sample *
   sample_count` ids fit (`GetMinibatchesInCsrWithPhysicalReplica`:
   `max_ids_per_chip = max_ids_per_chip_per_sample * sample_count`).

Simplifications, stated: a row of a sequence feature counts as one sample
here, where `TPUEmbeddingV2` makes each of its `max_sequence_length` positions
a sample (no merging across positions is done here either, so counts are
exact; only for a table that mixes a sequence feature with other features
does the cut between a chip's SparseCores fall elsewhere). Ids are counted
before truncation to `max_sequence_length`, an upper bound. Tables are
measured one by one; TF may stack tables of equal width and optimizer, whose
limits then apply to the stack.
"""

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from components.embedding_stats import accumulators

# TF 2.16 hard-codes these in `TPUEmbeddingV2.__init__`
# (tensorflow/python/tpu/tpu_embedding_v3.py: "These hyperparameters will be
# provided by the FDO. Currently hardcode here just for testing."). The
# per-partition limits come from libtpu (`SparseCore_GetMaxIdsAndUniques`),
# not from TensorFlow's source; newer TF takes all of them from
# `SparseCoreEmbeddingConfig`.
TF216_MAX_IDS_PER_CHIP_PER_SAMPLE = 64
TF216_MAX_MINIBATCHES_PER_SC = 64


def partition_id_counts(features: Sequence[Tuple[np.ndarray, np.ndarray, bool]],
                        num_ids: int, chips: int, sparsecores_per_chip: int
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """Ids and distinct ids each SparseCore sends to each partition.

  Args:
    features: The features of one table for one global batch, in stacking
      order: (row lengths [global batch], flat ids, is_sequence). All have the
      same number of rows, a multiple of `chips`.
    num_ids: Rows of the table; ids outside `[0, num_ids)` are not counted.
    chips: Chips (replicas).
    sparsecores_per_chip: SparseCores per chip.

  Returns:
    `(ids, unique_ids)`, int64 arrays of shape
    `[chips, sparsecores_per_chip, chips * sparsecores_per_chip]`: for
    SparseCore `s` of chip `c` and partition `p`, the ids (merged within a
    sample) and the distinct ids it sends to `p`.
  """
  n, partitions = sparsecores_per_chip, chips * sparsecores_per_chip
  shape = (chips, n, partitions)
  batch = len(features[0][0])
  per_chip = batch // chips
  samples_per_sparsecore = len(features) * per_chip // n
  keys = []
  for index, (lengths, ids, is_sequence) in enumerate(features):
    rows = np.repeat(np.arange(batch, dtype=np.int64), lengths)
    # The position keeps the ids of a sequence apart (each is its own sample).
    positions = (np.arange(ids.size, dtype=np.int64)
                 - np.repeat(np.cumsum(lengths) - lengths, lengths)
                 if is_sequence else np.zeros(ids.size, dtype=np.int64))
    valid = (ids >= 0) & (ids < num_ids)
    rows, ids, positions = rows[valid], ids[valid], positions[valid]
    chip = rows // per_chip
    sample = index * per_chip + rows % per_chip
    keys.append(np.stack([chip, sample, positions, ids], axis=1))
  keys = np.unique(np.concatenate(keys), axis=0)  # Merge in-sample repeats.
  chip, sample, ids = keys[:, 0], keys[:, 1], keys[:, 3]
  cell = (chip * n + sample // samples_per_sparsecore) * partitions + (
      ids % partitions)
  id_counts = np.bincount(cell, minlength=math.prod(shape))
  distinct = np.unique(np.stack([cell, ids], axis=1), axis=0)[:, 0]
  unique_counts = np.bincount(distinct, minlength=math.prod(shape))
  return (id_counts.reshape(shape).astype(np.int64),
          unique_counts.reshape(shape).astype(np.int64))


class TableLimitsAccumulator:
  """Exact histograms of one table's per-batch SparseCore figures.

  Attributes:
    max_ids: Per batch, the most ids any SparseCore sends to any partition.
    max_unique_ids: The same for distinct ids.
    partition_ids: Per (batch, SparseCore, partition), the ids sent.
    chip_ids: Per (batch, chip), the ids the chip preprocesses.
  """

  __slots__ = ('max_ids', 'max_unique_ids', 'partition_ids', 'chip_ids')

  def __init__(self):
    self.max_ids = accumulators.LengthHistogram()
    self.max_unique_ids = accumulators.LengthHistogram()
    self.partition_ids = accumulators.LengthHistogram()
    self.chip_ids = accumulators.LengthHistogram()

  def add(self, ids: np.ndarray, unique_ids: np.ndarray) -> None:
    """Counts one batch given `partition_id_counts`' output."""
    self.max_ids.add(np.array([ids.max()]))
    self.max_unique_ids.add(np.array([unique_ids.max()]))
    self.partition_ids.add(ids.ravel())
    self.chip_ids.add(ids.sum(axis=(1, 2)))

  def merge(self, other: 'TableLimitsAccumulator') -> None:
    for name in self.__slots__:
      getattr(self, name).merge(getattr(other, name))


class SparseCoreAccumulator:
  """Cuts the examples into global batches and counts each table's batches.

  Batches are consecutive examples in the order `add` receives them: in a
  Beam bundle, file order. Examples left over at the end of a bundle wait in
  the accumulator; `merge` appends the other accumulator's leftovers after its
  own and cuts further batches, so with several bundles a batch can join the
  tails of two of them. The last partial batch is never counted (the TPU path
  drops it too: static shapes).
  """

  __slots__ = ('chips', 'sparsecores_per_chip', 'global_batch_size', 'tables',
               'num_ids', 'sequences', 'pending', 'pending_rows',
               'num_batches', 'limits')

  def __init__(self, chips: int, sparsecores_per_chip: int,
               global_batch_size: int,
               tables: Mapping[str, Sequence[str]],
               num_ids: Mapping[str, int], sequences: Sequence[str]):
    """Creates an empty accumulator.

    Args:
      chips: Chips (replicas).
      sparsecores_per_chip: SparseCores per chip.
      global_batch_size: Examples per step, a multiple of `chips *
        sparsecores_per_chip`.
      tables: Table name -> its features, in stacking order.
      num_ids: Table name -> rows of the table.
      sequences: Names of the sequence features.
    """
    self.chips = chips
    self.sparsecores_per_chip = sparsecores_per_chip
    self.global_batch_size = global_batch_size
    self.tables = {t: tuple(f) for t, f in tables.items()}
    self.num_ids = dict(num_ids)
    self.sequences = frozenset(sequences)
    self.pending: Dict[str, List[Tuple[np.ndarray, np.ndarray]]] = {
        f: [] for features in self.tables.values() for f in features}
    self.pending_rows = 0
    self.num_batches = 0
    self.limits = {t: TableLimitsAccumulator() for t in self.tables}

  def add(self, num_rows: int,
          columns: Mapping[str, Tuple[np.ndarray, np.ndarray]]) -> None:
    """Adds examples: feature name -> (row lengths, flat ids)."""
    if not num_rows:
      return
    for name, chunks in self.pending.items():
      chunks.append(columns[name])
    self.pending_rows += num_rows
    self._count_full_batches()

  def merge(self, other: 'SparseCoreAccumulator') -> None:
    self.num_batches += other.num_batches
    for table, limits in other.limits.items():
      self.limits[table].merge(limits)
    for name, chunks in other.pending.items():
      self.pending[name].extend(chunks)
    self.pending_rows += other.pending_rows
    self._count_full_batches()

  def _count_full_batches(self) -> None:
    size = self.global_batch_size
    if self.pending_rows < size:
      return
    columns = {}
    for name, chunks in self.pending.items():
      lengths = np.concatenate([c[0] for c in chunks])
      ids = np.concatenate([c[1] for c in chunks])
      columns[name] = (lengths, ids, np.concatenate([[0], np.cumsum(lengths)]))
    start = 0
    while self.pending_rows - start >= size:
      self._count_batch({
          name: (lengths[start:start + size],
                 ids[offsets[start]:offsets[start + size]])
          for name, (lengths, ids, offsets) in columns.items()})
      start += size
    self.pending = {
        name: [(lengths[start:], ids[offsets[start]:])]
        for name, (lengths, ids, offsets) in columns.items()}
    self.pending_rows -= start

  def _count_batch(self, batch: Mapping[str, Tuple[np.ndarray, np.ndarray]]
                   ) -> None:
    self.num_batches += 1
    for table, features in self.tables.items():
      counts = partition_id_counts(
          [batch[f] + (f in self.sequences,) for f in features],
          self.num_ids[table], self.chips, self.sparsecores_per_chip)
      self.limits[table].add(*counts)


def table_layout(features: Sequence) -> Tuple[Dict[str, List[str]],
                                               Dict[str, int]]:
  """Table name -> features sorted by name, and table name -> rows.

  Args:
    features: `MeasuredFeature`s.

  Raises:
    ValueError: if features of one table disagree on the table's size.
  """
  tables: Dict[str, List[str]] = {}
  num_ids: Dict[str, int] = {}
  for feature in sorted(features, key=lambda f: f.name):
    table = feature.table_name
    if num_ids.setdefault(table, feature.num_ids) != feature.num_ids:
      raise ValueError(
          f'Features of table {table!r} disagree on its size: '
          f'{feature.name!r} has {feature.num_ids} ids, another '
          f'{num_ids[table]}; measure features of one table with one '
          'vocabulary.')
    tables.setdefault(table, []).append(feature.name)
  return tables, num_ids


def round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple

