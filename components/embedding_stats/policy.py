"""Chooses `max_sequence_length` from an exact length histogram."""

import dataclasses
from typing import Dict, Mapping, Sequence

from components.embedding_stats import accumulators
from components.embedding_stats import config
from components.embedding_stats import statistics


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def recommend_length(hist: accumulators.LengthHistogram,
                     policy: config.TruncationPolicy) -> int:
  """The smallest covering length, rounded up to a multiple, then clipped.

  The covering length is the exact `policy.coverage` lower quantile: at least
  that share of the rows are not truncated by it. Rounding up to
  `policy.multiple_of` never goes past the longest row seen (lists of at most
  50 get 50, not 56: padding beyond the data only costs memory), nor below 1.
  The result then lies in `[policy.min_length, policy.max_length]` (an
  explicit `min_length` above the longest row wins); an empty histogram gives
  `policy.min_length`.
  """
  covering = hist.quantile(policy.coverage)
  if covering is None:
    return policy.min_length
  longest = max(hist.max, 1)
  length = min(_round_up(covering, policy.multiple_of), longest)
  return int(min(max(length, policy.min_length), policy.max_length))


def recommend(split: statistics.SplitStatistics,
              sequence_features: Sequence[str],
              policy: config.TruncationPolicy
              ) -> Dict[str, statistics.Truncation]:
  """Recommended lengths (and what they cut) for the sequence features."""
  result = {}
  for name in sequence_features:
    hist = split.features[name].lengths.to_histogram()
    result[name] = statistics.Truncation.at_length(
        hist, recommend_length(hist, policy))
  return result


def with_truncation(split: statistics.SplitStatistics,
                    lengths: Mapping[str, int]) -> statistics.SplitStatistics:
  """Adds, per sequence feature, what its chosen length cuts in `split`."""
  features = dict(split.features)
  for name, length in lengths.items():
    feature = features[name]
    truncation = statistics.Truncation.at_length(
        feature.lengths.to_histogram(), length)
    features[name] = dataclasses.replace(
        feature, truncation=truncation)
  return dataclasses.replace(split, features=features)
