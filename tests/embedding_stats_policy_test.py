"""Tests of the max_sequence_length policy and the config round trips."""

import numpy as np
import pytest

from components.embedding_stats import accumulators
from components.embedding_stats import config
from components.embedding_stats import policy as policy_lib
from components.embedding_stats import statistics


def _histogram(pairs):
  return accumulators.LengthHistogram.from_pairs(pairs)


def _split(histograms):
  return statistics.SplitStatistics(
      num_examples=sum(h.num_rows for h in histograms.values()),
      features={
          name: statistics.FeatureStatistics(
              name=name, kind='identity', is_sequence=True,
              lengths=statistics.LengthStatistics.from_histogram(h))
          for name, h in histograms.items()})


class TestRecommendLength:

  def test_covers_coverage_share_of_rows(self):
    # 99 rows of length <= 7, one of length 50: p99 is 7 -> 8.
    hist = _histogram([(3, 60), (7, 39), (50, 1)])
    assert policy_lib.recommend_length(hist, config.TruncationPolicy()) == 8

  def test_just_below_coverage_needs_longer_length(self):
    # Only 98 rows of length <= 7: the 99th row has length 20 -> 24.
    hist = _histogram([(7, 98), (20, 1), (50, 1)])
    assert policy_lib.recommend_length(hist, config.TruncationPolicy()) == 24

  def test_rounding(self):
    hist = _histogram([(9, 90), (20, 10)])
    assert policy_lib.recommend_length(
        hist, config.TruncationPolicy(coverage=0.9, multiple_of=8)) == 16
    hist = _histogram([(9, 100)])
    assert policy_lib.recommend_length(
        hist, config.TruncationPolicy(multiple_of=1)) == 9
    assert policy_lib.recommend_length(
        _histogram([(16, 100)]), config.TruncationPolicy()) == 16

  def test_cap(self):
    hist = _histogram([(300, 100)])
    assert policy_lib.recommend_length(
        hist, config.TruncationPolicy(max_length=20)) == 20
    assert policy_lib.recommend_length(
        _histogram([(300, 100), (310, 1)]),
        config.TruncationPolicy()) == 304

  @pytest.mark.parametrize('pairs, longest', [
      ([(3, 10), (50, 990)], 50),   # Rounding would give 56.
      ([(9, 100)], 9),              # Rounding would give 16.
      ([(1, 5)], 1)])
  def test_never_above_the_longest_row_seen(self, pairs, longest):
    assert policy_lib.recommend_length(
        _histogram(pairs), config.TruncationPolicy()) == longest

  def test_at_least_one_when_every_row_is_empty(self):
    assert policy_lib.recommend_length(
        _histogram([(0, 10)]), config.TruncationPolicy(multiple_of=8)) == 1

  def test_at_least_one(self):
    policy = config.TruncationPolicy()
    assert policy_lib.recommend_length(_histogram([(0, 10)]), policy) == 1
    assert policy_lib.recommend_length(
        accumulators.LengthHistogram(), policy) == 1
    assert policy_lib.recommend_length(
        _histogram([(0, 10)]), config.TruncationPolicy(min_length=4)) == 4

  def test_coverage_is_configurable(self):
    hist = _histogram([(l, 10) for l in range(1, 11)])  # 10 rows each 1..10.
    policy = config.TruncationPolicy(coverage=0.5, multiple_of=1)
    assert policy_lib.recommend_length(hist, policy) == 5

  @pytest.mark.parametrize('kwargs', [
      dict(coverage=0.0), dict(coverage=1.5), dict(multiple_of=0),
      dict(min_length=0), dict(max_length=4, min_length=8)])
  def test_invalid_policies(self, kwargs):
    with pytest.raises(ValueError):
      config.TruncationPolicy(**kwargs)


class TestRecommend:

  def test_recommendations_and_truncation_shares(self):
    split = _split({'seq': _histogram([(3, 60), (7, 39), (50, 1)])})
    recommendations = policy_lib.recommend(split, ['seq'],
                                           config.TruncationPolicy())
    rec = recommendations['seq']
    assert rec.max_sequence_length == 8
    assert rec.rows_truncated == 1
    assert rec.rows_truncated_share == pytest.approx(0.01)
    assert rec.ids_truncated == 42
    assert rec.ids_truncated_share == pytest.approx(42 / (180 + 273 + 50))

  def test_with_truncation_applies_a_length_to_another_split(self):
    split = _split({'seq': _histogram([(2, 3), (12, 1)])})
    updated = policy_lib.with_truncation(split, {'seq': 8})
    truncation = updated.features['seq'].truncation
    assert truncation.rows_truncated_share == 0.25
    assert truncation.ids_truncated == 4
    assert split.features['seq'].truncation is None

  def test_randomized_against_brute_force(self):
    rng = np.random.default_rng(11)
    lengths = rng.geometric(0.1, size=5000)
    hist = accumulators.LengthHistogram()
    hist.add(lengths)
    policy = config.TruncationPolicy(coverage=0.95, multiple_of=4,
                                     max_length=1000)
    chosen = policy_lib.recommend_length(hist, policy)
    assert chosen % 4 == 0
    assert np.mean(lengths <= chosen) >= 0.95
    assert np.mean(lengths <= chosen - 4) < 0.95
    truncation = statistics.Truncation.at_length(hist, chosen)
    assert truncation.rows_truncated == int(np.sum(lengths > chosen))
    assert truncation.ids_truncated == int(
        np.sum(np.maximum(lengths - chosen, 0)))


class TestConfigJson:

  def test_features_round_trip(self):
    features = [
        config.FeatureToMeasure('hist', vocabulary_name='v', is_sequence=True),
        config.FeatureToMeasure('hour', kind='identity', num_buckets=24)]
    assert config.features_from_json(config.features_to_json(features)) == (
        features)

  def test_policy_round_trip_and_default(self):
    policy = config.TruncationPolicy(coverage=0.9, max_length=64)
    assert config.policy_from_json(config.policy_to_json(policy)) == policy
    assert config.policy_from_json(None) == config.TruncationPolicy()

  @pytest.mark.parametrize('text', [
      '[]', '[{"name": "a", "kind": "vocabulary"}]',
      '[{"name": "a", "kind": "identity"}]',
      '[{"name": "a", "kind": "hashed", "num_buckets": 3}]',
      '[{"name": "a", "kind": "identity", "num_buckets": 3, "typo": 1}]',
      '[{"name": "a", "kind": "identity", "num_buckets": 3},'
      ' {"name": "a", "kind": "identity", "num_buckets": 3}]'])
  def test_invalid_features(self, text):
    with pytest.raises((ValueError, TypeError)):
      config.features_from_json(text)
