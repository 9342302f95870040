"""Tests of the Beam PTransforms on small in-memory and on-disk inputs."""

import collections
import json
import os

import apache_beam as beam
from apache_beam.options import pipeline_options
from apache_beam.testing import util as beam_util
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from components.embedding_stats import beam_stats
from components.embedding_stats import config
from components.embedding_stats import decoding
from components.embedding_stats import features as features_lib
from components.embedding_stats import sparsecore
from components.embedding_stats import statistics

SEQ = features_lib.MeasuredFeature(
    name='seq', column='seq$ragged_values', encoding='ragged',
    kind='vocabulary', is_sequence=True, num_ids=6, vocabulary_size=5,
    num_oov_buckets=1)
HOUR = features_lib.MeasuredFeature(
    name='hour', column='hour', encoding='varlen', kind='identity',
    is_sequence=False, num_ids=24)
FEATURES = [SEQ, HOUR]


def _rows(seed, num_rows):
  """Rows of (seq ids, hour ids); some seq rows are long, some hours bad."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(num_rows):
    length = 20 if i % 17 == 0 else int(rng.integers(0, 5))
    seq = rng.integers(0, 6, size=length).tolist()
    hour = rng.integers(0, 25, size=int(rng.integers(0, 3))).tolist()
    rows.append((seq, hour))
  return rows


def _record_batch(rows):
  list_type = pa.large_list(pa.int64())
  return pa.RecordBatch.from_arrays(
      [pa.array([r[0] for r in rows], type=list_type),
       pa.array([r[1] for r in rows], type=list_type)],
      [SEQ.column, HOUR.column])


def _batches(rows, size=7):
  return [_record_batch(rows[i:i + size]) for i in range(0, len(rows), size)]


def _expected_checks(rows):
  """A matcher comparing a SplitStatistics with brute-force values."""
  seq_lengths = [len(r[0]) for r in rows]
  seq_ids = [i for r in rows for i in r[0]]
  hours = [h for r in rows for h in r[1]]

  def check(actual):
    assert len(actual) == 1
    stats = actual[0]
    assert stats.num_examples == len(rows)
    seq = stats.features['seq']
    assert dict(seq.lengths.histogram) == dict(
        collections.Counter(seq_lengths))
    assert seq.lengths.quantiles['p90'] == int(
        np.quantile(seq_lengths, 0.9, method='inverted_cdf'))
    assert seq.vocabulary.num_ids == len(seq_ids)
    assert seq.vocabulary.oov_ids == seq_ids.count(5)
    assert seq.vocabulary.oov_rate == pytest.approx(
        seq_ids.count(5) / len(seq_ids))
    hour = stats.features['hour']
    assert hour.identity.out_of_range_ids == hours.count(24)
    assert hour.identity.max_id == max(hours)
    assert hour.lengths.num_ids == len(hours)

  return check


def test_compute_statistics_in_memory():
  rows = _rows(seed=0, num_rows=60)
  with beam.Pipeline() as pipeline:
    result = (pipeline
              | beam.Create(_batches(rows), reshuffle=False)
              | beam_stats.ComputeEmbeddingStatistics(FEATURES))
    beam_util.assert_that(result, _expected_checks(rows))


def test_compute_statistics_on_empty_input():
  def check(actual):
    assert len(actual) == 1
    stats = actual[0]
    assert stats.num_examples == 0
    assert stats.features['seq'].lengths.num_rows == 0
    assert stats.features['seq'].lengths.quantiles['p50'] is None
    assert stats.features['seq'].vocabulary.oov_rate == 0.0
    assert stats.features['hour'].identity.min_id is None

  with beam.Pipeline() as pipeline:
    result = (pipeline
              | beam.Create([], reshuffle=False).with_output_types(
                  pa.RecordBatch)
              | beam_stats.ComputeEmbeddingStatistics(FEATURES))
    beam_util.assert_that(result, check)


def test_recommend_lengths_and_counters():
  train, evaluation = _rows(1, 100), _rows(2, 30)
  train_lengths = np.array([len(r[0]) for r in train])
  policy = config.TruncationPolicy(coverage=0.9, multiple_of=2)
  expected_length = min(int(np.ceil(np.quantile(
      train_lengths, 0.9, method='inverted_cdf') / 2) * 2),
                        int(train_lengths.max()))

  def check(actual):
    result = actual[0]
    assert result.recommended_max_sequence_lengths() == {
        'seq': expected_length}
    rec = result.recommendations['seq']
    assert rec.rows_truncated == int(np.sum(train_lengths > expected_length))
    eval_truncation = result.splits['eval'].features['seq'].truncation
    eval_lengths = np.array([len(r[0]) for r in evaluation])
    assert eval_truncation.rows_truncated == int(
        np.sum(eval_lengths > expected_length))
    assert result.splits['train'].features['hour'].truncation is None

  pipeline = beam.Pipeline()
  keyed = []
  for name, rows in (('train', train), ('eval', evaluation)):
    keyed.append(pipeline
                 | f'Create[{name}]' >> beam.Create(_batches(rows))
                 | f'Stats[{name}]' >> beam_stats.ComputeEmbeddingStatistics(
                     FEATURES)
                 | f'Key[{name}]' >> beam.Map(lambda s, k=name: (k, s)))
  result = (keyed | beam.Flatten()
            | beam_stats.RecommendSequenceLengths(FEATURES, policy))
  beam_util.assert_that(result, check)
  run = pipeline.run()
  run.wait_until_finish()
  counters = collections.Counter()
  for counter in run.metrics().query()['counters']:  # One per step: sum.
    counters[counter.key.metric.name] += counter.committed
  assert counters['examples_read'] == 130
  assert counters['rows_truncated_by_recommended_length'] == int(
      np.sum(train_lengths > expected_length)) > 0
  assert counters['rows_truncated_by_recommended_length[seq]'] == (
      counters['rows_truncated_by_recommended_length'])


def _write_examples(path, rows, options='GZIP'):
  with tf.io.TFRecordWriter(path, options=options) as writer:
    for seq, hour in rows:
      example = tf.train.Example()
      example.features.feature[SEQ.column].int64_list.value.extend(seq)
      if hour:  # Leave the key out sometimes: a missing key is an empty row.
        example.features.feature['hour'].int64_list.value.extend(hour)
      example.features.feature['ignored'].bytes_list.value.append(b'x')
      writer.write(example.SerializeToString())


@pytest.mark.parametrize('name,options', [('part.gz', 'GZIP'),
                                          ('part.tfrecord', None)])
def test_read_record_batches_matches_the_rows(tmp_path, name, options):
  rows = _rows(7, 23)
  path = str(tmp_path / name)
  _write_examples(path, rows, options)
  batches = list(decoding.read_record_batches(path, [SEQ.column, 'hour'], 10))
  assert [b.num_rows for b in batches] == [10, 10, 3]
  assert all(b.schema.names == ['hour', SEQ.column] for b in batches)
  for feature, index in ((SEQ, 0), (HOUR, 1)):
    columns = [decoding.record_batch_columns(b, [feature])[feature.name]
               for b in batches]
    lengths = np.concatenate([c[0] for c in columns])
    ids = np.concatenate([c[1] for c in columns])
    np.testing.assert_array_equal(lengths, [len(r[index]) for r in rows])
    np.testing.assert_array_equal(ids, [i for r in rows for i in r[index]])


def test_read_record_batches_rejects_unreadable_compression(tmp_path):
  path = str(tmp_path / 'part.bz2')
  with pytest.raises(ValueError, match='part.bz2: bzip2 compressed'):
    list(decoding.read_record_batches(path, [SEQ.column], 10))


def test_read_fails_when_no_file_matches(tmp_path):
  with pytest.raises(Exception, match='Empty match for pattern .*missing-'):
    with beam.Pipeline() as pipeline:
      _ = pipeline | beam_stats.ReadExamplesAsRecordBatches(
          str(tmp_path / 'missing-*'), [SEQ.column])


def test_generate_from_files_on_multi_process_runner(tmp_path):
  train, evaluation = _rows(3, 80), _rows(4, 20)
  for name, rows in (('train', train), ('eval', evaluation)):
    os.makedirs(tmp_path / f'Split-{name}')
    for shard in range(2):
      _write_examples(str(tmp_path / f'Split-{name}' / f'part-{shard}.gz'),
                      rows[shard::2])
  options = pipeline_options.PipelineOptions(
      direct_num_workers=2, direct_running_mode='multi_processing')
  patterns = {name: str(tmp_path / f'Split-{name}' / '*')
              for name in ('train', 'eval')}
  out = str(tmp_path / 'out')
  with beam.Pipeline(options=options) as pipeline:
    _ = pipeline | beam_stats.GenerateEmbeddingStatistics(
        patterns, FEATURES, config.TruncationPolicy(), out)
  result = statistics.load_embedding_statistics(out)
  for name, rows in (('train', train), ('eval', evaluation)):
    # Shard order differs from row order: compare order-free values.
    _expected_checks(rows)([result.splits[name]])


def test_sparsecore_limits_in_a_beam_run():
  topology = config.SparseCoreTopology(chips=2, sparsecores_per_chip=2,
                                       global_batch_size=8, multiple_of=1)
  train, evaluation = _rows(5, 64), _rows(6, 20)  # 8 and 2 full batches.
  expected_max = {SEQ.name: 0, HOUR.name: 0}
  expected_batches = 0
  for rows in (train, evaluation):
    for start in range(0, len(rows) - 7, 8):  # RecordBatches of one batch.
      expected_batches += 1
      batch = _record_batch(rows[start:start + 8])
      for feature in FEATURES:
        lengths, ids = decoding.list_lengths_and_values(
            batch.column(batch.schema.names.index(feature.column)))
        counts, _ = sparsecore.partition_id_counts(
            [(lengths, ids, feature.is_sequence)], feature.num_ids, 2, 2)
        expected_max[feature.name] = max(expected_max[feature.name],
                                         int(counts.max()))

  def check(actual):
    result = statistics.EmbeddingStatisticsResult.from_dict(
        json.loads(actual[0].to_json()))
    limits = result.recommended_sparsecore_limits()
    assert set(limits) == {SEQ.name, HOUR.name}
    for name, expected in expected_max.items():
      assert limits[name]['max_ids_per_partition'] == expected > 0
      table = result.sparsecore.tables[name]
      assert table.num_batches == expected_batches
      assert table.observed_max_ids_per_partition == expected
    assert result.splits['train'].sparsecore.num_batches == 8
    assert result.splits['eval'].sparsecore.num_batches == 2
    assert result.recommended_max_ids_per_chip_per_sample() >= 1
    assert 'sparsecore' in result.to_summary()

  pipeline = beam.Pipeline()
  keyed = []
  for name, rows in (('train', train), ('eval', evaluation)):
    keyed.append(pipeline
                 | f'Create[{name}]' >> beam.Create(_batches(rows, size=8))
                 | f'Stats[{name}]' >> beam_stats.ComputeEmbeddingStatistics(
                     FEATURES, topology)
                 | f'Key[{name}]' >> beam.Map(lambda s, k=name: (k, s)))
  result = (keyed | beam.Flatten()
            | beam_stats.RecommendSequenceLengths(
                FEATURES, config.TruncationPolicy(), topology))
  beam_util.assert_that(result, check)
  pipeline.run().wait_until_finish()
