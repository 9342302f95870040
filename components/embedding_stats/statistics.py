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
          }},
        "sparsecore": {num_batches, global_batch_size,      # if configured
                       tables: {"<table>": {table, features, samples_per_chip,
                                            max_ids, max_unique_ids,
                                            partition_ids, chip_ids}}} | null
      }},
    "recommendations": {"<feature>": {max_sequence_length, rows_truncated,
                                      rows_truncated_share, ids_truncated,
                                      ids_truncated_share}},
    "sparsecore": {topology: {...}, max_ids_per_chip_per_sample,
                   tables: {"<table>": SparseCoreLimits}} | null,
    "checks": {train_split, oov_rate_skew, untrained_oov_share,
               unseen_id_share},
    "warnings": [{check, feature, train_split, split, value, threshold,
                  message}]
  }

SparseCore histograms (`max_ids`, ... under `splits.<split>.sparsecore`) have
the form of `lengths` (an exact histogram of non-negative integers with its
quantiles): `max_ids` / `max_unique_ids` hold one value per global batch (the
most ids / distinct ids one SparseCore sent to one partition), `partition_ids`
one per (batch, SparseCore, partition), `chip_ids` one per (batch, chip). See
`sparsecore.py` for how ids are assigned and `sparsecore_limits.py` for the
recommendation. The "sparsecore" keys are absent or null when no topology was
configured; "checks" and "warnings" are absent in files written before they
existed (read as the defaults and no warnings).

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
from components.embedding_stats import sparsecore

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
class SparseCoreTableStatistics:
  """One table's ids per SparseCore partition over the measured batches."""
  table: str
  features: List[str]
  samples_per_chip: int
  max_ids: LengthStatistics
  max_unique_ids: LengthStatistics
  partition_ids: LengthStatistics
  chip_ids: LengthStatistics

  @classmethod
  def from_accumulator(cls, table: str, features: Sequence[str],
                       samples_per_chip: int,
                       limits: sparsecore.TableLimitsAccumulator
                       ) -> 'SparseCoreTableStatistics':
    return cls(
        table=table, features=list(features),
        samples_per_chip=samples_per_chip,
        **{name: LengthStatistics.from_histogram(getattr(limits, name))
           for name in sparsecore.TableLimitsAccumulator.__slots__})

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]
                ) -> 'SparseCoreTableStatistics':
    histograms = {name: LengthStatistics.from_dict(values[name])
                  for name in sparsecore.TableLimitsAccumulator.__slots__}
    return cls(table=values['table'], features=list(values['features']),
               samples_per_chip=values['samples_per_chip'], **histograms)


@dataclasses.dataclass(frozen=True)
class SparseCoreSplitStatistics:
  """SparseCore figures of one split: consecutive global batches."""
  num_batches: int
  global_batch_size: int
  tables: Dict[str, SparseCoreTableStatistics]

  @classmethod
  def from_accumulator(cls, accumulator: sparsecore.SparseCoreAccumulator
                       ) -> 'SparseCoreSplitStatistics':
    per_chip = accumulator.global_batch_size // accumulator.chips
    return cls(
        num_batches=accumulator.num_batches,
        global_batch_size=accumulator.global_batch_size,
        tables={table: SparseCoreTableStatistics.from_accumulator(
                    table, features, len(features) * per_chip,
                    accumulator.limits[table])
                for table, features in sorted(accumulator.tables.items())})

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]
                ) -> 'SparseCoreSplitStatistics':
    return cls(num_batches=values['num_batches'],
               global_batch_size=values['global_batch_size'],
               tables={name: SparseCoreTableStatistics.from_dict(t)
                       for name, t in values['tables'].items()})


@dataclasses.dataclass(frozen=True)
class SplitStatistics:
  """Statistics of all measured features in one split.

  `id_counts` (feature -> exact per-id counts, for features that keep them)
  only travels inside the pipeline, to compare splits; it is not written.
  """
  num_examples: int
  features: Dict[str, FeatureStatistics]
  sparsecore: Optional[SparseCoreSplitStatistics] = None
  id_counts: Dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict, compare=False, repr=False)

  def to_dict(self) -> Dict[str, Any]:
    values = dataclasses.asdict(dataclasses.replace(self, id_counts={}))
    del values['id_counts']
    return values

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'SplitStatistics':
    sparsecore_values = values.get('sparsecore')
    return cls(num_examples=values['num_examples'],
               features={name: FeatureStatistics.from_dict(f)
                         for name, f in values['features'].items()},
               sparsecore=(SparseCoreSplitStatistics.from_dict(
                   sparsecore_values) if sparsecore_values else None))


def feature_statistics(accumulator: accumulators.FeatureAccumulator,
                       feature: features_lib.MeasuredFeature
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
                     features: Sequence[features_lib.MeasuredFeature]
                     ) -> SplitStatistics:
  """Extracts the statistics of one split from its accumulator."""
  return SplitStatistics(
      num_examples=accumulator.num_examples,
      features={f.name: feature_statistics(accumulator.features[f.name], f)
                for f in features},
      sparsecore=(SparseCoreSplitStatistics.from_accumulator(
          accumulator.sparsecore) if accumulator.sparsecore else None),
      id_counts={f.name: accumulator.features[f.name].ids.dense_counts()
                 for f in features if f.keeps_id_counts})


@dataclasses.dataclass(frozen=True)
class SparseCoreLimits:
  """Recommended SparseCore limits of one table, and what the data needs.

  Attributes:
    max_ids_per_partition: Recommended `max_ids_per_table` value (newer TF's
      `SparseCoreEmbeddingConfig`; per SparseCore and partition).
    max_unique_ids_per_partition: Recommended `max_unique_ids_per_table`.
    max_ids_per_chip_per_sample: What this table needs of the global
      `max_ids_per_chip_per_sample`.
    observed_max_ids_per_partition: The largest value seen in any batch.
    observed_max_unique_ids_per_partition: Likewise for distinct ids.
    num_batches: Global batches measured, over all measured splits.
    num_ids: Ids in those batches (merged within a sample).
    batches_over_max_ids: Batches in which some SparseCore sends more ids to
      a partition than the recommended limit (they need minibatching); 0 at
      coverage 1.0.
    batches_over_max_unique_ids: The same for distinct ids.
    ids_over_tf216_default_share: Share of ids beyond TF 2.16's fixed
      `max_ids_per_chip_per_sample` (64) times the chip's samples: dropped
      when id dropping is allowed, an error otherwise.
  """
  max_ids_per_partition: int
  max_unique_ids_per_partition: int
  max_ids_per_chip_per_sample: int
  observed_max_ids_per_partition: int
  observed_max_unique_ids_per_partition: int
  num_batches: int
  num_ids: int
  batches_over_max_ids: int
  batches_over_max_unique_ids: int
  ids_over_tf216_default_share: float


@dataclasses.dataclass(frozen=True)
class SparseCoreRecommendation:
  """SparseCore limits for the configured topology, per table."""
  topology: config.SparseCoreTopology
  max_ids_per_chip_per_sample: int
  tables: Dict[str, SparseCoreLimits]

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]
                ) -> 'SparseCoreRecommendation':
    return cls(topology=config.SparseCoreTopology(**values['topology']),
               max_ids_per_chip_per_sample=values[
                   'max_ids_per_chip_per_sample'],
               tables={name: SparseCoreLimits(**t)
                       for name, t in values['tables'].items()})


@dataclasses.dataclass(frozen=True)
class SplitWarning:
  """A trap found by comparing a split with the training split.

  Attributes:
    check: 'oov_rate_skew', 'untrained_oov_buckets' or 'unseen_ids'.
    feature: The feature.
    train_split: The training split it was compared with.
    split: The other split.
    value: The measured value (a share).
    threshold: The configured threshold it exceeds.
    message: What was found and what to do.
  """
  check: str
  feature: str
  train_split: str
  split: str
  value: float
  threshold: float
  message: str


@dataclasses.dataclass(frozen=True)
class EmbeddingStatisticsResult:
  """Statistics of all splits plus the recommended sequence lengths.

  This is what `load_embedding_statistics` returns and what the Trainer uses
  to resolve `max_sequence_length='auto'`.
  """
  policy: config.TruncationPolicy
  features: List[features_lib.MeasuredFeature]
  splits: Dict[str, SplitStatistics]
  recommendations: Dict[str, Truncation]
  schema_version: int = SCHEMA_VERSION
  sparsecore: Optional[SparseCoreRecommendation] = None
  checks: config.SplitChecks = config.SplitChecks()
  warnings: List[SplitWarning] = dataclasses.field(default_factory=list)

  def recommended_max_sequence_lengths(self) -> Dict[str, int]:
    """Feature name -> recommended `max_sequence_length` (sequences only)."""
    return {name: r.max_sequence_length
            for name, r in sorted(self.recommendations.items())}

  def recommended_sparsecore_limits(self) -> Dict[str, Dict[str, int]]:
    """Table -> {'max_ids_per_partition', 'max_unique_ids_per_partition'}.

    Empty when no SparseCore topology was configured. The values go to newer
    TF's `SparseCoreEmbeddingConfig(max_ids_per_table=...,
    max_unique_ids_per_table=...)`, keyed by table name.
    """
    if self.sparsecore is None:
      return {}
    return {table: {
        'max_ids_per_partition': limits.max_ids_per_partition,
        'max_unique_ids_per_partition': limits.max_unique_ids_per_partition}
            for table, limits in sorted(self.sparsecore.tables.items())}

  def recommended_max_ids_per_chip_per_sample(self) -> Optional[int]:
    """The global `max_ids_per_chip_per_sample` (None without a topology)."""
    return (self.sparsecore.max_ids_per_chip_per_sample
            if self.sparsecore is not None else None)

  def to_summary(self) -> Dict[str, Any]:
    """A small dict of chosen lengths, truncation rates, limits, warnings."""
    recommendations = sorted(self.recommendations.items())
    summary = {
        'reference_split': self.policy.reference_split,
        'coverage_target': self.policy.coverage,
        'max_sequence_length': self.recommended_max_sequence_lengths(),
        'rows_truncated_share': {n: r.rows_truncated_share
                                 for n, r in recommendations},
        'ids_truncated_share': {n: r.ids_truncated_share
                                for n, r in recommendations},
        'warnings': [w.message for w in self.warnings],
    }
    if self.sparsecore is not None:
      summary['sparsecore'] = {
          'topology': dataclasses.asdict(self.sparsecore.topology),
          'max_ids_per_chip_per_sample':
              self.sparsecore.max_ids_per_chip_per_sample,
          'limits': self.recommended_sparsecore_limits(),
          'ids_over_tf216_default_share': {
              t: limits.ids_over_tf216_default_share
              for t, limits in sorted(self.sparsecore.tables.items())},
      }
    return summary

  def to_dict(self) -> Dict[str, Any]:
    return {
        'schema_version': self.schema_version,
        'reference_split': self.policy.reference_split,
        'policy': dataclasses.asdict(self.policy),
        'features': [f.to_dict() for f in self.features],
        'splits': {name: s.to_dict()
                   for name, s in sorted(self.splits.items())},
        'recommendations': {
            name: dataclasses.asdict(r)
            for name, r in sorted(self.recommendations.items())},
        'sparsecore': (dataclasses.asdict(self.sparsecore)
                       if self.sparsecore is not None else None),
        'checks': dataclasses.asdict(self.checks),
        'warnings': [dataclasses.asdict(w) for w in self.warnings],
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
        features=[features_lib.MeasuredFeature(**f)
                  for f in values['features']],
        splits={name: SplitStatistics.from_dict(s)
                for name, s in values['splits'].items()},
        recommendations={name: Truncation(**r)
                         for name, r in values['recommendations'].items()},
        schema_version=version,
        sparsecore=(SparseCoreRecommendation.from_dict(values['sparsecore'])
                    if values.get('sparsecore') else None),
        checks=config.SplitChecks(**values.get('checks', {})),
        warnings=[SplitWarning(**w) for w in values.get('warnings', [])])


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
