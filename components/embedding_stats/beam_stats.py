"""Beam PTransforms that compute embedding statistics.

  ReadExamplesAsRecordBatches: TFRecord files -> RecordBatches of the measured
    columns.
  ComputeEmbeddingStatistics: RecordBatches of one split -> one
    `SplitStatistics` (a single global combine, exact).
  RecommendSequenceLengths: (split, SplitStatistics) pairs -> one
    `EmbeddingStatisticsResult` with the recommended lengths.
  GenerateEmbeddingStatistics: all of the above for several splits, writing
    `embedding_statistics.json`.
"""

from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io import filesystem
import pyarrow as pa

from components.embedding_stats import accumulators
from components.embedding_stats import config
from components.embedding_stats import decoding
from components.embedding_stats import features as features_lib
from components.embedding_stats import policy as policy_lib
from components.embedding_stats import sparsecore
from components.embedding_stats import sparsecore_limits
from components.embedding_stats import split_checks
from components.embedding_stats import statistics

METRICS_NAMESPACE = 'tpu_embedding_tfx.EmbeddingStatsGen'
# Examples per RecordBatch read: large enough that per-batch Python work is
# negligible, small enough that a batch of long sequences stays a few MiB.
_READ_BATCH_SIZE = 4096

_examples_read = beam.metrics.Metrics.counter(METRICS_NAMESPACE,
                                              'examples_read')
_rows_truncated = beam.metrics.Metrics.counter(
    METRICS_NAMESPACE, 'rows_truncated_by_recommended_length')


class EmbeddingStatsCombineFn(beam.CombineFn):
  """Combines RecordBatches into exact per-feature statistics.

  The accumulator is an `accumulators.DatasetAccumulator` (with a
  `sparsecore.SparseCoreAccumulator` when a topology is given); this class
  only adapts it to Beam.
  """

  def __init__(self, features: Sequence[features_lib.MeasuredFeature],
               topology: Optional[config.SparseCoreTopology] = None):
    self._features = tuple(features)
    self._topology = topology
    # Validates the table layout now, at pipeline construction.
    self._tables, self._table_ids = sparsecore.table_layout(self._features)

  def create_accumulator(self) -> accumulators.DatasetAccumulator:
    topology = self._topology
    sparsecore_accumulator = None if topology is None else (
        sparsecore.SparseCoreAccumulator(
            topology.chips, topology.sparsecores_per_chip,
            topology.global_batch_size, self._tables, self._table_ids,
            [f.name for f in self._features if f.is_sequence]))
    return accumulators.DatasetAccumulator(
        {f.name: (f.num_ids, f.keeps_id_counts) for f in self._features},
        sparsecore_accumulator)

  def add_input(self, accumulator: accumulators.DatasetAccumulator,
                record_batch: pa.RecordBatch
                ) -> accumulators.DatasetAccumulator:
    accumulator.add(record_batch.num_rows,
                    decoding.record_batch_columns(record_batch, self._features))
    return accumulator

  def merge_accumulators(
      self, accumulators_: Iterable[accumulators.DatasetAccumulator]
  ) -> accumulators.DatasetAccumulator:
    iterator = iter(accumulators_)
    result = next(iterator)
    for accumulator in iterator:
      result.merge(accumulator)
    return result

  def extract_output(self, accumulator: accumulators.DatasetAccumulator
                     ) -> statistics.SplitStatistics:
    return statistics.split_statistics(accumulator, self._features)


def _count_examples(record_batch: pa.RecordBatch) -> pa.RecordBatch:
  _examples_read.inc(record_batch.num_rows)
  return record_batch


class _ReadFileDoFn(beam.DoFn):
  """Reads one TFRecord file of tf.Examples as RecordBatches of `columns`."""

  def __init__(self, columns: Sequence[str], batch_size: int):
    self._columns = tuple(columns)
    self._batch_size = batch_size

  def process(self, file_metadata: filesystem.FileMetadata
              ) -> Iterable[pa.RecordBatch]:
    yield from decoding.read_record_batches(
        file_metadata.path, self._columns, self._batch_size)


@beam.ptransform_fn
@beam.typehints.with_output_types(pa.RecordBatch)
def ReadExamplesAsRecordBatches(pipeline: beam.pvalue.PBegin,
                                file_pattern: str,
                                columns: Sequence[str],
                                batch_size: int = _READ_BATCH_SIZE
                                ) -> beam.PCollection:
  """Reads (gzipped) TFRecords of tf.Examples, decoding only `columns`.

  A file is the unit of work: its records are read and parsed in batches by
  TensorFlow's C++ reader and parser, with no per-example Python or Beam
  element. (A gzipped file cannot be split anyway, and Transform writes
  gzipped shards.) A pattern matching no file is an error.
  """
  return (pipeline
          | 'MatchFiles' >> fileio.MatchFiles(
              file_pattern,
              empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
          | 'SpreadFiles' >> beam.Reshuffle()
          | 'ReadAndDecode' >> beam.ParDo(_ReadFileDoFn(columns, batch_size)))


@beam.ptransform_fn
@beam.typehints.with_input_types(pa.RecordBatch)
@beam.typehints.with_output_types(statistics.SplitStatistics)
def ComputeEmbeddingStatistics(
    record_batches: beam.PCollection,
    features: Sequence[features_lib.MeasuredFeature],
    topology: Optional[config.SparseCoreTopology] = None
) -> beam.PCollection:
  """Computes the statistics of one split; emits exactly one element.

  With a `topology`, also counts ids per SparseCore partition over
  consecutive global batches (see `sparsecore.SparseCoreAccumulator`).
  """
  return (record_batches
          | 'CountExamples' >> beam.Map(_count_examples)
          | 'CombineStatistics' >> beam.CombineGlobally(
              EmbeddingStatsCombineFn(features, topology)))


def _count_warnings(warnings: Sequence[statistics.SplitWarning]) -> None:
  for warning in warnings:
    beam.metrics.Metrics.counter(
        METRICS_NAMESPACE, f'warnings[{warning.check}]').inc()


def build_result(
    splits: Mapping[str, statistics.SplitStatistics],
    features: Sequence[features_lib.MeasuredFeature],
    policy: config.TruncationPolicy,
    topology: Optional[config.SparseCoreTopology] = None,
    checks: Optional[config.SplitChecks] = None
) -> statistics.EmbeddingStatisticsResult:
  """Recommends lengths and limits, and compares splits with training.

  Lengths come from the reference split and are applied to all splits;
  SparseCore limits (with a `topology`) cover all splits; warnings compare
  each split with the training split of `checks`.
  """
  checks = checks or config.SplitChecks()
  if policy.reference_split not in splits:
    raise ValueError(
        f'Reference split {policy.reference_split!r} of the policy was not '
        f'measured; measured splits: {sorted(splits)}.')
  sequences = [f.name for f in features if f.is_sequence]
  recommendations = policy_lib.recommend(
      splits[policy.reference_split], sequences, policy)
  lengths = {n: r.max_sequence_length for n, r in recommendations.items()}
  for name, recommendation in recommendations.items():
    _rows_truncated.inc(recommendation.rows_truncated)
    beam.metrics.Metrics.counter(
        METRICS_NAMESPACE, f'rows_truncated_by_recommended_length[{name}]'
    ).inc(recommendation.rows_truncated)
  warnings = split_checks.split_warnings(
      splits, features, checks.training_split(policy), checks)
  _count_warnings(warnings)
  return statistics.EmbeddingStatisticsResult(
      policy=policy, features=list(features),
      splits={n: policy_lib.with_truncation(s, lengths)
              for n, s in splits.items()},
      recommendations=recommendations,
      sparsecore=(sparsecore_limits.recommend_limits(splits, topology)
                  if topology is not None else None),
      checks=checks, warnings=warnings)


@beam.ptransform_fn
@beam.typehints.with_input_types(Tuple[str, statistics.SplitStatistics])
@beam.typehints.with_output_types(statistics.EmbeddingStatisticsResult)
def RecommendSequenceLengths(
    split_statistics: beam.PCollection,
    features: Sequence[features_lib.MeasuredFeature],
    policy: config.TruncationPolicy,
    topology: Optional[config.SparseCoreTopology] = None,
    checks: Optional[config.SplitChecks] = None) -> beam.PCollection:
  """Joins the splits' statistics; adds recommendations and warnings."""
  return (split_statistics
          | 'CollectSplits' >> beam.combiners.ToDict()
          | 'Recommend' >> beam.Map(build_result, features, policy, topology,
                                    checks))


@beam.ptransform_fn
@beam.typehints.with_output_types(statistics.EmbeddingStatisticsResult)
def GenerateEmbeddingStatistics(
    pipeline: beam.pvalue.PBegin, file_patterns: Mapping[str, str],
    features: Sequence[features_lib.MeasuredFeature],
    policy: config.TruncationPolicy, output_uri: str,
    topology: Optional[config.SparseCoreTopology] = None,
    checks: Optional[config.SplitChecks] = None) -> beam.PCollection:
  """Reads each split, computes, recommends and writes the JSON to `output_uri`.

  Args:
    pipeline: The pipeline.
    file_patterns: split name -> TFRecord file pattern of that split.
    features: The resolved features to measure.
    policy: How to pick sequence lengths.
    output_uri: Directory that receives `embedding_statistics.json`.
    topology: SparseCore topology whose limits to recommend (None: off).
    checks: Thresholds of the split warnings (None: the defaults).

  Returns:
    A PCollection holding the one `EmbeddingStatisticsResult`.
  """
  columns = [f.column for f in features]
  keyed: List[beam.PCollection] = []
  for split, pattern in sorted(file_patterns.items()):
    keyed.append(
        pipeline
        | f'Read[{split}]' >> ReadExamplesAsRecordBatches(pattern, columns)
        | f'ComputeStatistics[{split}]' >> ComputeEmbeddingStatistics(
            features, topology)
        | f'KeyBySplit[{split}]' >> beam.Map(lambda s, k=split: (k, s)))
  result = (keyed
            | 'FlattenSplits' >> beam.Flatten(pipeline=pipeline.pipeline)
            | 'RecommendLengths' >> RecommendSequenceLengths(
                features, policy, topology, checks))
  _ = result | 'WriteStatistics' >> beam.Map(statistics.write_statistics,
                                              output_uri)
  return result
