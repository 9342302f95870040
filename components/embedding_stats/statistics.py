"""The statistics data model, its JSON form and its loader.

`embedding_statistics.json` (schema_version 1) looks like:

  {
    "schema_version": 1,
    "reference_split": "train",          # split the recommendations come from
    "policy": {coverage, multiple_of, max_length, min_length, reference_split},
    "features": [{name, column, encoding, kind, is_sequence, num_ids,
                  vocabulary_size, num_oov_buckets}],   # as resolved
    "splits": {
      "<split>": {
        "num_examples": int,
        "features": {
          "<feature>": {
            "name", "kind", "is_sequence",
            "lengths": {num_rows, num_empty_rows, num_ids, min, max, mean,
                        quantiles: {p50, p90, p95, p99, p99.9},
                        histogram: [[length, rows], ...]},     # exact
            "vocabulary": {vocabulary_size, num_oov_buckets, num_ids, oov_ids,
                           oov_rate, out_of_range_ids, min_id, max_id,
                           distinct_vocabulary_ids,
                           top_coverage: {top_1%, top_10%, top_50%}} | null,
            "identity": {num_buckets, num_ids, min_id, max_id,
                         out_of_range_ids, out_of_range_rate} | null,
            "truncation": {max_sequence_length, rows_truncated,
                           rows_truncated_share, ids_truncated,
                           ids_truncated_share} | null   # sequences only
          }}}},
    "recommendations": {"<feature>": {max_sequence_length, rows_truncated,
                                      rows_truncated_share, ids_truncated,
                                      ids_truncated_share}}
  }

Quantiles are exact lower quantiles (NumPy's 'inverted_cdf'). Rates are shares
of all id occurrences of the split; `top_k%` is the share of occurrences that
the `ceil(k% * vocabulary_size)` most frequent vocabulary ids cover. Min/max
values and quantiles are null when a split has no rows or no ids.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components.embedding_stats import accumulators
from components.embedding_stats import config
from components.embedding_stats import features as features_lib

SCHEMA_VERSION = 1
STATISTICS_FILE = 'embedding_statistics.json'
QUANTILES = (('p50', 0.5), ('p90', 0.9), ('p95', 0.95), ('p99', 0.99),
             ('p99.9', 0.999))
COVERAGE_FRACTIONS = (('top_1%', 0.01), ('top_10%', 0.10), ('top_50%', 0.50))


def _share(part: int, whole: int) -> float:
  return part / whole if whole else 0.0


def _top_k(fraction: float, vocabulary_size: int) -> int:
  """`ceil(fraction * vocabulary_size)`, immune to float noise (0.1 * 30)."""
  return math.ceil(round(fraction * vocabulary_size, 9))


@dataclasses.dataclass(frozen=True)
class LengthStatistics:
  """Row lengths (ids per row) of one feature in one split."""
  num_rows: int
  num_empty_rows: int
  num_ids: int
  min: Optional[int]
  max: Optional[int]
  mean: Optional[float]
  quantiles: Dict[str, Optional[int]]
  histogram: List[Tuple[int, int]]

  @classmethod
  def from_histogram(cls, hist: accumulators.LengthHistogram
                     ) -> 'LengthStatistics':
    return cls(
        num_rows=hist.num_rows, num_empty_rows=hist.num_empty_rows,
        num_ids=hist.total_length, min=hist.min, max=hist.max, mean=hist.mean,
        quantiles={key: hist.quantile(q) for key, q in QUANTILES},
        histogram=hist.to_pairs())

  def to_histogram(self) -> accumulators.LengthHistogram:
    return accumulators.LengthHistogram.from_pairs(self.histogram)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'LengthStatistics':
    return cls(**{**values,
                  'histogram': [tuple(p) for p in values['histogram']]})


@dataclasses.dataclass(frozen=True)
class VocabularyStatistics:
  """Id usage of a vocabulary feature in one split."""
  vocabulary_size: int
  num_oov_buckets: int
  num_ids: int
  oov_ids: int
  oov_rate: float
  out_of_range_ids: int
  min_id: Optional[int]
  max_id: Optional[int]
  distinct_vocabulary_ids: int
  top_coverage: Dict[str, float]

  @classmethod
  def from_counts(cls, ids: accumulators.IdCounts, vocabulary_size: int,
                  num_oov_buckets: int) -> 'VocabularyStatistics':
    counts = ids.dense_counts()
    in_vocab = counts[:vocabulary_size]
    oov_ids = int(counts[vocabulary_size:].sum())
    descending = np.sort(in_vocab)[::-1]
    coverage = {
        key: _share(int(descending[:_top_k(f, vocabulary_size)].sum()),
                    ids.total)
        for key, f in COVERAGE_FRACTIONS}
    return cls(
        vocabulary_size=vocabulary_size, num_oov_buckets=num_oov_buckets,
        num_ids=ids.total, oov_ids=oov_ids,
        oov_rate=_share(oov_ids, ids.total),
        out_of_range_ids=ids.out_of_range, min_id=ids.min_id,
        max_id=ids.max_id,
        distinct_vocabulary_ids=int(np.count_nonzero(in_vocab)),
        top_coverage=coverage)


@dataclasses.dataclass(frozen=True)
class IdentityStatistics:
  """Id range of an identity feature in one split."""
  num_buckets: int
  num_ids: int
  min_id: Optional[int]
  max_id: Optional[int]
  out_of_range_ids: int
  out_of_range_rate: float

  @classmethod
  def from_counts(cls, ids: accumulators.IdCounts) -> 'IdentityStatistics':
    return cls(num_buckets=ids.num_ids, num_ids=ids.total, min_id=ids.min_id,
               max_id=ids.max_id, out_of_range_ids=ids.out_of_range,
               out_of_range_rate=_share(ids.out_of_range, ids.total))


@dataclasses.dataclass(frozen=True)
class Truncation:
  """What a `max_sequence_length` cuts from one split."""
  max_sequence_length: int
  rows_truncated: int
  rows_truncated_share: float
  ids_truncated: int
  ids_truncated_share: float

  @classmethod
  def at_length(cls, hist: accumulators.LengthHistogram,
                max_sequence_length: int) -> 'Truncation':
    rows = hist.rows_longer_than(max_sequence_length)
    ids = hist.ids_beyond(max_sequence_length)
    return cls(max_sequence_length=max_sequence_length, rows_truncated=rows,
               rows_truncated_share=_share(rows, hist.num_rows),
               ids_truncated=ids,
               ids_truncated_share=_share(ids, hist.total_length))


@dataclasses.dataclass(frozen=True)
class FeatureStatistics:
  """All statistics of one feature in one split."""
  name: str
  kind: str
  is_sequence: bool
  lengths: LengthStatistics
  vocabulary: Optional[VocabularyStatistics] = None
  identity: Optional[IdentityStatistics] = None
  truncation: Optional[Truncation] = None

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'FeatureStatistics':
    def optional(key, klass):
      return klass(**values[key]) if values.get(key) is not None else None
    return cls(name=values['name'], kind=values['kind'],
               is_sequence=values['is_sequence'],
               lengths=LengthStatistics.from_dict(values['lengths']),
               vocabulary=optional('vocabulary', VocabularyStatistics),
               identity=optional('identity', IdentityStatistics),
               truncation=optional('truncation', Truncation))


@dataclasses.dataclass(frozen=True)
class SplitStatistics:
  """Statistics of all measured features in one split."""
  num_examples: int
  features: Dict[str, FeatureStatistics]

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'SplitStatistics':
    return cls(num_examples=values['num_examples'],
               features={name: FeatureStatistics.from_dict(f)
                         for name, f in values['features'].items()})


def feature_statistics(accumulator: accumulators.FeatureAccumulator,
                       feature: features_lib.ResolvedFeature
                       ) -> FeatureStatistics:
  """Extracts the statistics of one feature from its accumulator."""
  vocabulary = identity = None
  if feature.kind == config.KIND_VOCABULARY:
    vocabulary = VocabularyStatistics.from_counts(
        accumulator.ids, feature.vocabulary_size, feature.num_oov_buckets)
  else:
    identity = IdentityStatistics.from_counts(accumulator.ids)
  return FeatureStatistics(
      name=feature.name, kind=feature.kind, is_sequence=feature.is_sequence,
      lengths=LengthStatistics.from_histogram(accumulator.lengths),
      vocabulary=vocabulary, identity=identity)


def split_statistics(accumulator: accumulators.DatasetAccumulator,
                     features: Sequence[features_lib.ResolvedFeature]
                     ) -> SplitStatistics:
  """Extracts the statistics of one split from its accumulator."""
  return SplitStatistics(
      num_examples=accumulator.num_examples,
      features={f.name: feature_statistics(accumulator.features[f.name], f)
                for f in features})


@dataclasses.dataclass(frozen=True)
class EmbeddingStatisticsResult:
  """Statistics of all splits plus the recommended sequence lengths.

  This is what `load_embedding_statistics` returns and what the Trainer uses
  to resolve `max_sequence_length='auto'`.
  """
  policy: config.TruncationPolicy
  features: List[features_lib.ResolvedFeature]
  splits: Dict[str, SplitStatistics]
  recommendations: Dict[str, Truncation]
  schema_version: int = SCHEMA_VERSION

  def recommended_max_sequence_lengths(self) -> Dict[str, int]:
    """Feature name -> recommended `max_sequence_length` (sequences only)."""
    return {name: r.max_sequence_length
            for name, r in sorted(self.recommendations.items())}

  def to_summary(self) -> Dict[str, Any]:
    """A small dict of chosen lengths and truncation rates."""
    recommendations = sorted(self.recommendations.items())
    return {
        'reference_split': self.policy.reference_split,
        'coverage_target': self.policy.coverage,
        'max_sequence_length': self.recommended_max_sequence_lengths(),
        'rows_truncated_share': {n: r.rows_truncated_share
                                 for n, r in recommendations},
        'ids_truncated_share': {n: r.ids_truncated_share
                                for n, r in recommendations},
    }

  def to_dict(self) -> Dict[str, Any]:
    return {
        'schema_version': self.schema_version,
        'reference_split': self.policy.reference_split,
        'policy': dataclasses.asdict(self.policy),
        'features': [f.to_dict() for f in self.features],
        'splits': {name: dataclasses.asdict(s)
                   for name, s in sorted(self.splits.items())},
        'recommendations': {
            name: dataclasses.asdict(r)
            for name, r in sorted(self.recommendations.items())},
    }

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'EmbeddingStatisticsResult':
    version = values.get('schema_version')
    if version != SCHEMA_VERSION:
      raise ValueError(
          f'Unsupported embedding statistics schema_version {version!r}; '
          f'this code reads version {SCHEMA_VERSION}.')
    return cls(
        policy=config.policy_from_dict(values['policy']),
        features=[features_lib.ResolvedFeature(**f)
                  for f in values['features']],
        splits={name: SplitStatistics.from_dict(s)
                for name, s in values['splits'].items()},
        recommendations={name: Truncation(**r)
                         for name, r in values['recommendations'].items()},
        schema_version=version)


def write_statistics(result: EmbeddingStatisticsResult, uri: str) -> str:
  """Writes `embedding_statistics.json` under `uri` (any tf.io.gfile path)."""
  tf.io.gfile.makedirs(uri)
  path = os.path.join(uri, STATISTICS_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(result.to_json())
  return path


def load_embedding_statistics(uri: Any) -> EmbeddingStatisticsResult:
  """Loads the statistics from an artifact URI (or an artifact with `.uri`)."""
  uri = getattr(uri, 'uri', uri)
  with tf.io.gfile.GFile(os.path.join(uri, STATISTICS_FILE)) as f:
    return EmbeddingStatisticsResult.from_dict(json.load(f))
