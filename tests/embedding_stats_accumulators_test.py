"""Tests of the pure NumPy accumulators, statistics extraction and decoding."""

import dataclasses
import itertools
import random

import numpy as np
import pyarrow as pa
import pytest

from components.embedding_stats import accumulators
from components.embedding_stats import decoding
from components.embedding_stats import features as features_lib
from components.embedding_stats import statistics

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def _histogram(lengths):
  hist = accumulators.LengthHistogram()
  hist.add(np.asarray(lengths, dtype=np.int64))
  return hist


class TestLengthHistogram:

  def test_empty(self):
    hist = accumulators.LengthHistogram()
    hist.add(np.zeros(0, dtype=np.int64))
    assert hist.num_rows == 0
    assert hist.num_empty_rows == 0
    assert hist.total_length == 0
    assert (hist.min, hist.max, hist.mean) == (None, None, None)
    assert hist.quantile(0.5) is None
    assert hist.rows_longer_than(3) == 0
    assert hist.ids_beyond(0) == 0
    assert hist.to_pairs() == []

  def test_all_empty_rows(self):
    hist = _histogram([0] * 7)
    assert hist.num_rows == 7
    assert hist.num_empty_rows == 7
    assert (hist.min, hist.max, hist.mean) == (0, 0, 0.0)
    assert [hist.quantile(q) for q in QS] == [0] * len(QS)
    assert hist.to_pairs() == [(0, 7)]

  def test_summary_values(self):
    hist = _histogram([3, 0, 5, 3, 1])
    assert hist.num_rows == 5
    assert hist.num_empty_rows == 1
    assert hist.total_length == 12
    assert (hist.min, hist.max) == (0, 5)
    assert hist.mean == pytest.approx(2.4)
    assert hist.to_pairs() == [(0, 1), (1, 1), (3, 2), (5, 1)]

  def test_known_quantiles(self):
    hist = _histogram(range(1, 11))  # 1..10
    assert hist.quantile(0.5) == 5
    assert hist.quantile(0.9) == 9
    assert hist.quantile(0.91) == 10
    assert hist.quantile(0.0) == 1
    assert hist.quantile(1.0) == 10

  def test_quantile_float_noise(self):
    # 0.999 * 1000 is 998.999...: the 999th row is still the p99.9.
    hist = _histogram([1] * 999 + [50])
    assert hist.quantile(0.999) == 1
    assert hist.quantile(0.9991) == 50

  @pytest.mark.parametrize('seed', [0, 1, 2])
  def test_quantiles_match_numpy_inverted_cdf(self, seed):
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.poisson(6, size=997),
                              rng.integers(0, 300, size=3)])
    hist = _histogram(lengths)
    for q in QS:
      expected = np.quantile(lengths, q, method='inverted_cdf')
      assert hist.quantile(q) == int(expected), q

  def test_truncation_counts(self):
    hist = _histogram([0, 2, 5, 9, 9])
    assert hist.rows_longer_than(4) == 3
    assert hist.ids_beyond(4) == 1 + 5 + 5
    assert hist.rows_longer_than(9) == 0
    assert hist.ids_beyond(100) == 0

  def test_round_trip_pairs(self):
    hist = _histogram([4, 4, 0, 17])
    restored = accumulators.LengthHistogram.from_pairs(hist.to_pairs())
    np.testing.assert_array_equal(restored.counts, hist.counts)

  def test_merge_different_sizes(self):
    left, right = _histogram([1, 2]), _histogram([30])
    left.merge(right)
    assert left.to_pairs() == [(1, 1), (2, 1), (30, 1)]
    assert right.to_pairs() == [(30, 1)]  # Merged-in side is not mutated.


class TestIdCounts:

  def test_empty(self):
    ids = accumulators.IdCounts(5, keep_counts=True)
    ids.add(np.zeros(0, dtype=np.int64))
    assert ids.counts is None  # Allocated lazily.
    assert (ids.total, ids.out_of_range, ids.min_id, ids.max_id) == (
        0, 0, None, None)
    np.testing.assert_array_equal(ids.dense_counts(), np.zeros(5))

  def test_counts_and_out_of_range(self):
    ids = accumulators.IdCounts(4, keep_counts=True)
    ids.add(np.array([0, 3, 3, -1, 4, 9, 1], dtype=np.int64))
    np.testing.assert_array_equal(ids.dense_counts(), [1, 1, 0, 2])
    assert ids.total == 7
    assert ids.out_of_range == 3
    assert (ids.min_id, ids.max_id) == (-1, 9)

  def test_identity_keeps_no_counts(self):
    ids = accumulators.IdCounts(10**9, keep_counts=False)
    ids.add(np.array([5, 10**9, 7], dtype=np.int64))
    assert ids.counts is None
    assert ids.out_of_range == 1
    assert ids.dense_counts().size == 0


def _dataset_accumulator():
  return accumulators.DatasetAccumulator(
      {'seq': (6, True), 'ident': (3, False)})


def _random_batches(seed, num_batches=12):
  rng = np.random.default_rng(seed)
  batches = []
  for _ in range(num_batches):
    rows = int(rng.integers(0, 5))
    columns = {}
    for name, high in (('seq', 8), ('ident', 4)):
      lengths = rng.integers(0, 6, size=rows)
      columns[name] = (lengths, rng.integers(-1, high, size=lengths.sum()))
    batches.append((rows, columns))
  return batches


def _accumulate(batch):
  accumulator = _dataset_accumulator()
  accumulator.add(*batch)
  return accumulator


def _state(accumulator):
  """Everything an accumulator holds, in comparable form."""
  state = [accumulator.num_examples]
  for name in sorted(accumulator.features):
    feature = accumulator.features[name]
    state += [feature.lengths.to_pairs(), feature.ids.total,
              feature.ids.out_of_range, feature.ids.min_id, feature.ids.max_id,
              feature.ids.dense_counts().tolist()]
  return state


class TestDatasetAccumulatorMerge:

  def test_merge_order_does_not_matter(self):
    batches = _random_batches(seed=3)
    sequential = _dataset_accumulator()
    for batch in batches:
      sequential.add(*batch)
    expected = _state(sequential)
    rng = random.Random(0)
    for _ in range(10):
      parts = [_accumulate(b) for b in batches]
      rng.shuffle(parts)
      # Random binary tree: merge random neighbours until one is left.
      while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        parts[i].merge(parts.pop(i + 1))
      assert _state(parts[0]) == expected

  def test_merge_is_associative_and_commutative(self):
    a, b, c = (_accumulate(batch) for batch in _random_batches(7, 3))
    results = []
    for x, y, z in itertools.permutations((a, b, c)):
      left = _dataset_accumulator()
      left.merge(x)
      left.merge(y)
      right = _dataset_accumulator()
      right.merge(z)
      left.merge(right)
      results.append(_state(left))
    assert all(r == results[0] for r in results)

  def test_merge_with_empty(self):
    full = _accumulate(_random_batches(5, 1)[0])
    expected = _state(full)
    empty = _dataset_accumulator()
    empty.merge(full)
    assert _state(empty) == expected


class TestStatisticsExtraction:

  def test_vocabulary_statistics(self):
    ids = accumulators.IdCounts(12, keep_counts=True)  # 10 vocab + 2 OOV.
    ids.add(np.array([0] * 50 + [1] * 20 + [2] * 10 + [5] * 5 + [10] * 10
                     + [11] * 4 + [-1], dtype=np.int64))
    stats = statistics.VocabularyStatistics.from_counts(ids, 10, 2)
    assert stats.num_ids == 100
    assert stats.oov_ids == 14
    assert stats.oov_rate == pytest.approx(0.14)
    assert stats.out_of_range_ids == 1
    assert (stats.min_id, stats.max_id) == (-1, 11)
    assert stats.distinct_vocabulary_ids == 4
    # top 1% and 10% of 10 ids: 1 id; top 50%: 5 ids.
    assert stats.top_coverage == {'top_1%': 0.5, 'top_10%': 0.5,
                                  'top_50%': pytest.approx(0.85)}

  def test_vocabulary_statistics_without_ids(self):
    ids = accumulators.IdCounts(3, keep_counts=True)
    stats = statistics.VocabularyStatistics.from_counts(ids, 2, 1)
    assert stats.oov_rate == 0.0
    assert stats.top_coverage['top_50%'] == 0.0
    assert stats.min_id is None

  def test_identity_statistics(self):
    ids = accumulators.IdCounts(24, keep_counts=False)
    ids.add(np.array([0, 23, 24, 5], dtype=np.int64))
    stats = statistics.IdentityStatistics.from_counts(ids)
    assert (stats.num_buckets, stats.min_id, stats.max_id) == (24, 0, 24)
    assert stats.out_of_range_ids == 1
    assert stats.out_of_range_rate == 0.25

  def test_length_statistics_round_trip(self):
    stats = statistics.LengthStatistics.from_histogram(
        _histogram([0, 1, 1, 8, 3]))
    assert stats.quantiles == {'p50': 1, 'p90': 8, 'p95': 8, 'p99': 8,
                               'p99.9': 8}
    as_dict = dataclasses.asdict(stats)
    assert statistics.LengthStatistics.from_dict(as_dict) == stats


class TestDecoding:

  def test_lengths_and_values_with_missing_rows_and_slices(self):
    array = pa.array([[1, 2], None, [], [3, 4, 5]],
                     type=pa.large_list(pa.int64()))
    lengths, values = decoding.list_lengths_and_values(array.slice(1))
    np.testing.assert_array_equal(lengths, [0, 0, 3])
    np.testing.assert_array_equal(values, [3, 4, 5])

  def test_null_typed_column_is_empty(self):
    lengths, values = decoding.list_lengths_and_values(pa.nulls(3))
    np.testing.assert_array_equal(lengths, [0, 0, 0])
    assert values.size == 0

  def test_absent_column_means_empty_rows(self):
    feature = features_lib.MeasuredFeature(
        name='f', column='f$ragged_values', encoding='ragged',
        kind='identity', is_sequence=True, num_ids=3)
    batch = pa.RecordBatch.from_arrays(
        [pa.array([[1]] * 2, type=pa.large_list(pa.int64()))], ['other'])
    lengths, values = decoding.record_batch_columns(batch, [feature])['f']
    np.testing.assert_array_equal(lengths, [0, 0])
    assert values.size == 0

  def test_decoder_reads_only_measured_columns(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    example = tf.train.Example()
    example.features.feature['a'].int64_list.value.extend([4, 5])
    example.features.feature['b'].bytes_list.value.append(b'x')
    batch = decoding.decode_examples([example.SerializeToString(),
                                      tf.train.Example().SerializeToString()],
                                     ['a', 'missing'])
    assert batch.schema.names == ['a', 'missing']
    # A row without the feature is empty (as `read_record_batches` reads it).
    assert batch.column(0).to_pylist() == [[4, 5], []]
    assert batch.column(1).to_pylist() == [[], []]
