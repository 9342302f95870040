"""Recommends SparseCore buffer limits from the measured batches.

A limit is chosen as `max_sequence_length` is: the exact `coverage` quantile
of the per-batch maxima (1.0: the largest seen), rounded up to
`multiple_of`. All measured splits count, since evaluation batches go through
the same preprocessing as training batches.
"""

import math
from typing import Dict, Mapping

from components.embedding_stats import accumulators
from components.embedding_stats import config
from components.embedding_stats import sparsecore
from components.embedding_stats import statistics


def _merged(tables, name: str) -> accumulators.LengthHistogram:
  """One histogram (`name`) of a table, summed over splits."""
  hist = accumulators.LengthHistogram()
  for table in tables:
    hist.merge(getattr(table, name).to_histogram())
  return hist


def _covering_limit(hist: accumulators.LengthHistogram,
                    topology: config.SparseCoreTopology) -> int:
  value = hist.quantile(topology.coverage) or 0
  return sparsecore.round_up(max(value, 1), topology.multiple_of)


def table_limits(tables, topology: config.SparseCoreTopology
                 ) -> statistics.SparseCoreLimits:
  """Limits of one table from its `SparseCoreTableStatistics` per split."""
  max_ids = _merged(tables, 'max_ids')
  max_unique_ids = _merged(tables, 'max_unique_ids')
  chip_ids = _merged(tables, 'chip_ids')
  samples_per_chip = tables[0].samples_per_chip
  ids_limit = _covering_limit(max_ids, topology)
  unique_limit = _covering_limit(max_unique_ids, topology)
  ids_per_chip = chip_ids.quantile(topology.coverage) or 0
  per_sample = sparsecore.round_up(
      max(math.ceil(ids_per_chip / samples_per_chip), 1), topology.multiple_of)
  tf216_limit = sparsecore.TF216_MAX_IDS_PER_CHIP_PER_SAMPLE * samples_per_chip
  num_ids = chip_ids.total_length
  return statistics.SparseCoreLimits(
      max_ids_per_partition=ids_limit,
      max_unique_ids_per_partition=unique_limit,
      max_ids_per_chip_per_sample=per_sample,
      observed_max_ids_per_partition=max_ids.max or 0,
      observed_max_unique_ids_per_partition=max_unique_ids.max or 0,
      num_batches=max_ids.num_rows, num_ids=num_ids,
      batches_over_max_ids=max_ids.rows_longer_than(ids_limit),
      batches_over_max_unique_ids=max_unique_ids.rows_longer_than(
          unique_limit),
      ids_over_tf216_default_share=(
          chip_ids.ids_beyond(tf216_limit) / num_ids if num_ids else 0.0))


def recommend_limits(splits: Mapping[str, statistics.SplitStatistics],
                     topology: config.SparseCoreTopology
                     ) -> statistics.SparseCoreRecommendation:
  """Per-table limits and the global per-sample figure over all splits."""
  per_table: Dict[str, list] = {}
  for _, split in sorted(splits.items()):
    if split.sparsecore is None:
      raise ValueError('A SparseCore topology is configured but a split has '
                       'no SparseCore statistics.')
    for name, table in split.sparsecore.tables.items():
      per_table.setdefault(name, []).append(table)
  tables = {name: table_limits(t, topology)
            for name, t in sorted(per_table.items())}
  per_sample = max((t.max_ids_per_chip_per_sample for t in tables.values()),
                   default=topology.multiple_of)
  return statistics.SparseCoreRecommendation(
      topology=topology, max_ids_per_chip_per_sample=per_sample,
      tables=tables)
