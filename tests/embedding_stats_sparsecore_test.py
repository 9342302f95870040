"""SparseCore partition counts, their accumulator and the recommended limits.

The counts are checked against `_loop_counts`, an independent plain-Python
reading of the assignment documented in `sparsecore.py`.
"""

import itertools
import math

import numpy as np
import pytest

from components.embedding_stats import accumulators
from components.embedding_stats import config
from components.embedding_stats import features as features_lib
from components.embedding_stats import sparsecore
from components.embedding_stats import sparsecore_limits
from components.embedding_stats import statistics


def _loop_counts(features, num_ids, chips, per_chip_cores):
  """Ids and distinct-id sets per (chip, SparseCore, partition), by loops.

  `features`: list of (rows, is_sequence), rows a list of id lists.
  """
  batch = len(features[0][0])
  per_chip = batch // chips
  per_core = len(features) * per_chip // per_chip_cores
  partitions = chips * per_chip_cores
  ids = np.zeros((chips, per_chip_cores, partitions), dtype=np.int64)
  distinct = [[[set() for _ in range(partitions)]
               for _ in range(per_chip_cores)] for _ in range(chips)]
  for chip in range(chips):
    for index, (rows, is_sequence) in enumerate(features):
      for row in range(per_chip):
        core = (index * per_chip + row) // per_core
        seen = set()
        for i in rows[chip * per_chip + row]:
          if not 0 <= i < num_ids:
            continue
          if not is_sequence:
            if i in seen:
              continue
            seen.add(i)
          ids[chip, core, i % partitions] += 1
          distinct[chip][core][i % partitions].add(i)
  unique = np.array([[[len(s) for s in core] for core in chip]
                     for chip in distinct], dtype=np.int64)
  return ids, unique


def _as_arrays(rows):
  lengths = np.array([len(r) for r in rows], dtype=np.int64)
  ids = np.array([i for r in rows for i in r], dtype=np.int64)
  return lengths, ids


def _random_rows(rng, batch, num_ids, max_length):
  # Ids slightly beyond [0, num_ids) test the range filter; small id spaces
  # make in-row repeats frequent.
  return [rng.integers(-1, num_ids + 2,
                       size=int(rng.integers(0, max_length + 1))).tolist()
          for _ in range(batch)]


@pytest.mark.parametrize('chips,cores,num_features', [
    (1, 1, 1), (1, 4, 1), (2, 2, 2), (4, 4, 3), (2, 4, 3), (8, 2, 1)])
def test_partition_counts_match_loops(chips, cores, num_features):
  rng = np.random.default_rng(chips * 100 + cores * 10 + num_features)
  batch = chips * cores * 3
  num_ids = 37
  features = [(_random_rows(rng, batch, num_ids, 6), index % 2 == 1)
              for index in range(num_features)]
  ids, unique = sparsecore.partition_id_counts(
      [_as_arrays(rows) + (seq,) for rows, seq in features], num_ids, chips,
      cores)
  expected_ids, expected_unique = _loop_counts(features, num_ids, chips,
                                               cores)
  np.testing.assert_array_equal(ids, expected_ids)
  np.testing.assert_array_equal(unique, expected_unique)
  assert ids.sum() > 0 and (unique <= ids).all()


def test_partition_counts_by_hand():
  # 1 chip x 2 SparseCores = 2 partitions; rows 0-1 go to SparseCore 0,
  # rows 2-3 to SparseCore 1. Even ids live on partition 0.
  rows = [[2, 2, 4], [2], [3, 5, 5], [1, 7]]
  ids, unique = sparsecore.partition_id_counts(
      [_as_arrays(rows) + (False,)], 8, 1, 2)
  # SparseCore 0: id 2 twice (rows 0 and 1; the repeat in row 0 merged), 4.
  np.testing.assert_array_equal(ids[0], [[3, 0], [0, 4]])
  np.testing.assert_array_equal(unique[0], [[2, 0], [0, 4]])
  # As a sequence every position is a sample: nothing is merged.
  ids, unique = sparsecore.partition_id_counts(
      [_as_arrays(rows) + (True,)], 8, 1, 2)
  np.testing.assert_array_equal(ids[0], [[4, 0], [0, 5]])
  np.testing.assert_array_equal(unique[0], [[2, 0], [0, 4]])


def test_two_features_of_one_table_split_the_sample_space():
  # With two features, the first feature's rows fill SparseCore 0 and the
  # second's SparseCore 1 (1 chip, 2 SparseCores, batch 2).
  first = [[0], [0]]
  second = [[1], [1]]
  ids, _ = sparsecore.partition_id_counts(
      [_as_arrays(first) + (False,), _as_arrays(second) + (False,)], 4, 1, 2)
  np.testing.assert_array_equal(ids[0], [[2, 0], [0, 2]])


def _accumulator(topology, tables, num_ids, sequences=()):
  return sparsecore.SparseCoreAccumulator(
      topology.chips, topology.sparsecores_per_chip,
      topology.global_batch_size, tables, num_ids, sequences)


def _columns(rows_by_feature, start, stop):
  return {name: _as_arrays(rows[start:stop])
          for name, rows in rows_by_feature.items()}


def _reference_histograms(rows_by_feature, batches, tables, num_ids,
                          sequences, topology):
  """Per table: per-batch maxima and chip totals; `batches` lists row indices."""
  result = {}
  for table, names in tables.items():
    maxima, unique_maxima, chip_totals = [], [], []
    for batch in batches:
      ids, unique = _loop_counts(
          [([rows_by_feature[n][i] for i in batch], n in sequences)
           for n in names], num_ids[table], topology.chips,
          topology.sparsecores_per_chip)
      maxima.append(int(ids.max()))
      unique_maxima.append(int(unique.max()))
      chip_totals += ids.sum(axis=(1, 2)).tolist()
    result[table] = (maxima, unique_maxima, chip_totals)
  return result


def _histogram_values(hist):
  return sorted(itertools.chain.from_iterable(
      [value] * count for value, count in hist.to_pairs()))


def test_accumulator_cuts_consecutive_batches_and_merges_leftovers():
  rng = np.random.default_rng(7)
  topology = config.SparseCoreTopology(chips=2, sparsecores_per_chip=2,
                                       global_batch_size=8)
  rows = {'a': _random_rows(rng, 61, 20, 5), 'b': _random_rows(rng, 61, 20, 3),
          'c': _random_rows(rng, 61, 9, 4)}
  tables = {'ab': ['a', 'b'], 'c': ['c']}
  num_ids = {'ab': 20, 'c': 9}
  sequences = ('b',)
  # Uneven chunks, split over two accumulators whose leftovers join on merge.
  first, second = (_accumulator(topology, tables, num_ids, sequences)
                   for _ in range(2))
  for start, stop in ((0, 5), (5, 19), (19, 30)):
    first.add(stop - start, _columns(rows, start, stop))
  for start, stop in ((30, 33), (33, 61)):
    second.add(stop - start, _columns(rows, start, stop))
  assert first.pending_rows == 30 % 8
  first.merge(second)
  assert first.num_batches == 61 // 8
  assert first.pending_rows == 61 % 8
  # Each accumulator cuts its own consecutive batches; the merge joins the
  # first's tail (rows 24-29) with the head of the second's (rows 54-55).
  batches = [list(range(s, s + 8)) for s in (0, 8, 16, 30, 38, 46)]
  batches.append(list(range(24, 30)) + [54, 55])
  expected = _reference_histograms(rows, batches, tables, num_ids, sequences,
                                   topology)
  for table, (maxima, unique_maxima, chip_totals) in expected.items():
    limits = first.limits[table]
    assert _histogram_values(limits.max_ids) == sorted(maxima)
    assert _histogram_values(limits.max_unique_ids) == sorted(unique_maxima)
    assert _histogram_values(limits.chip_ids) == sorted(chip_totals)
    assert limits.partition_ids.num_rows == 7 * 2 * 2 * 4


def test_dataset_accumulator_feeds_the_sparsecore_accumulator():
  topology = config.SparseCoreTopology(chips=1, sparsecores_per_chip=2,
                                       global_batch_size=2)
  dataset = accumulators.DatasetAccumulator(
      {'a': (4, True)}, _accumulator(topology, {'a': ['a']}, {'a': 4}))
  dataset.add(3, {'a': _as_arrays([[0], [1, 3], [2]])})
  assert dataset.sparsecore.num_batches == 1
  assert dataset.sparsecore.pending_rows == 1


def test_table_layout_groups_and_checks_sizes():
  def feature(name, table, num_ids):
    return features_lib.MeasuredFeature(
        name=name, column=name, encoding='varlen', kind='identity',
        is_sequence=False, num_ids=num_ids, table=table)
  tables, num_ids = sparsecore.table_layout(
      [feature('z', 'shared', 10), feature('a', 'shared', 10),
       feature('own', None, 3)])
  assert tables == {'shared': ['a', 'z'], 'own': ['own']}
  assert num_ids == {'shared': 10, 'own': 3}
  with pytest.raises(ValueError, match="table 'shared'"):
    sparsecore.table_layout([feature('a', 'shared', 10),
                             feature('b', 'shared', 11)])


def test_topology_validation():
  with pytest.raises(ValueError, match='divide into 3 chips'):
    config.SparseCoreTopology(chips=3, sparsecores_per_chip=4,
                              global_batch_size=1024)
  with pytest.raises(ValueError, match='multiple of 16'):
    config.SparseCoreTopology(chips=4, sparsecores_per_chip=4,
                              global_batch_size=1028)
  with pytest.raises(ValueError, match='coverage'):
    config.SparseCoreTopology(chips=1, sparsecores_per_chip=1,
                              global_batch_size=1, coverage=0.0)
  topology = config.SparseCoreTopology(chips=4, sparsecores_per_chip=4,
                                       global_batch_size=1024)
  assert topology.num_partitions == 16 and topology.per_chip_batch_size == 256


def _table_statistics(max_ids, max_unique, chip_ids, samples_per_chip):
  def stats(values):
    hist = accumulators.LengthHistogram()
    hist.add(np.array(values))
    return statistics.LengthStatistics.from_histogram(hist)
  return statistics.SparseCoreTableStatistics(
      table='t', features=['f'], samples_per_chip=samples_per_chip,
      max_ids=stats(max_ids), max_unique_ids=stats(max_unique),
      partition_ids=stats(max_ids), chip_ids=stats(chip_ids))


def test_limits_cover_the_quantile_and_round_up():
  maxima = list(range(1, 101))  # 100 batches.
  chip_ids = [100, 700, 300]
  tables = [_table_statistics(maxima, [m // 2 for m in maxima], chip_ids, 10)]
  topology = config.SparseCoreTopology(chips=1, sparsecores_per_chip=1,
                                       global_batch_size=10)
  limits = sparsecore_limits.table_limits(tables, topology)
  assert limits.max_ids_per_partition == 104  # 100 rounded up to 8s.
  assert limits.max_unique_ids_per_partition == 56  # 50 -> 56.
  assert limits.observed_max_ids_per_partition == 100
  assert limits.batches_over_max_ids == 0
  assert limits.max_ids_per_chip_per_sample == 72  # ceil(700 / 10) -> 72.
  # 64 ids per sample x 10 samples = 640 fit; 60 of 1100 ids do not.
  assert limits.ids_over_tf216_default_share == pytest.approx(60 / 1100)
  assert limits.num_ids == 1100 and limits.num_batches == 100
  at_90 = sparsecore_limits.table_limits(
      tables, config.SparseCoreTopology(chips=1, sparsecores_per_chip=1,
                                        global_batch_size=10, coverage=0.9,
                                        multiple_of=1))
  assert at_90.max_ids_per_partition == 90
  assert at_90.batches_over_max_ids == 10


def test_limits_merge_splits():
  topology = config.SparseCoreTopology(chips=1, sparsecores_per_chip=1,
                                       global_batch_size=4, multiple_of=1)
  train = _table_statistics([3, 5], [2, 2], [10, 12], 4)
  evaluation = _table_statistics([9], [4], [30], 4)
  limits = sparsecore_limits.table_limits([train, evaluation], topology)
  assert limits.max_ids_per_partition == 9
  assert limits.max_unique_ids_per_partition == 4
  assert limits.max_ids_per_chip_per_sample == math.ceil(30 / 4)
  assert limits.num_batches == 3


def test_features_from_spec_carry_table_names():
  from components import embedding as emb  # pylint: disable=g-import-not-at-top
  from components.embedding_stats import from_spec  # pylint: disable=g-import-not-at-top
  cast = emb.embedding_column(
      emb.sequence_categorical_column_with_transform_vocabulary(
          'cast_xf', 'cast'), dimension=8, max_sequence_length=4)
  crew = emb.shared_embedding_columns(
      [emb.categorical_column_with_transform_vocabulary('director_xf', 'crew'),
       emb.categorical_column_with_transform_vocabulary('writer_xf', 'crew')],
      dimension=8, shared_embedding_collection_name='crew_table')
  spec = emb.EmbeddingSpec(columns=[cast] + crew, optimizer=emb.Adagrad(0.1))
  measured = {f.name: f for f in from_spec.features_from_embedding_spec(spec)}
  assert measured['director_xf'].table == 'crew_table'
  assert measured['writer_xf'].table == 'crew_table'
  assert measured['cast_xf'].table == cast.resolved_table_name
