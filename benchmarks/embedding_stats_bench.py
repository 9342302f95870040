"""Throughput of the embedding statistics pipeline on synthetic examples.

Writes N gzipped tf.Examples shaped like a Transform output: a Zipf-distributed
sequence feature (`items$ragged_values`, vocab 100k + 1 OOV bucket), an
identity bag (`hours`) and an unused bytes feature. It then times
`GenerateEmbeddingStatistics` on the DirectRunner, TFDV's `GenerateStatistics`
(what StatisticsGen runs, through `tfdv.generate_statistics_from_tfrecord`) on
the same file, and, for reference, the in-process NumPy path alone (decode +
accumulate) without Beam.

  TF_USE_LEGACY_KERAS=1 .venv/bin/python -m benchmarks.embedding_stats_bench \
      --num_examples=200000

`benchmarks.run_all` uses `prepare_inputs` (base examples, amplified 4x and
16x by `amplify`, which keeps the length and id distributions) and `run_case`
(one system, one file, repeated), each in its own worker process.
"""

import argparse
import os
import tempfile
import time
from typing import Any, Dict, Iterator, Mapping, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from apache_beam.options import pipeline_options
from tfx_bsl.coders import example_coder

from benchmarks import measure
from components.embedding_stats import accumulators
from components.embedding_stats import beam_stats
from components.embedding_stats import config
from components.embedding_stats import decoding
from components.embedding_stats import features as features_lib

_VOCABULARY_SIZE = 100_000
FEATURES = [
    features_lib.MeasuredFeature(
        name='items', column='items$ragged_values', encoding='ragged',
        kind='vocabulary', is_sequence=True, num_ids=_VOCABULARY_SIZE + 1,
        vocabulary_size=_VOCABULARY_SIZE, num_oov_buckets=1),
    features_lib.MeasuredFeature(
        name='hours', column='hours', encoding='varlen', kind='identity',
        is_sequence=False, num_ids=24),
]

SYSTEM_EMBEDDING_STATS = 'embedding_stats'
SYSTEM_TFDV = 'tfdv'
SYSTEMS = (SYSTEM_EMBEDDING_STATS, SYSTEM_TFDV)
SYSTEM_LABELS = {
    SYSTEM_EMBEDDING_STATS: 'EmbeddingStatsGen (GenerateEmbeddingStatistics)',
    SYSTEM_TFDV: 'StatisticsGen equivalent (tfdv GenerateStatistics)',
}
_AMPLIFY_CHUNK = 4096


def _serialized_examples(num_examples, seed=0):
  rng = np.random.default_rng(seed)
  lengths = np.minimum(rng.geometric(0.08, size=num_examples), 200)
  ids = np.minimum(rng.zipf(1.2, size=int(lengths.sum())) - 1,
                   _VOCABULARY_SIZE)
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  for i in range(num_examples):
    example = tf.train.Example()
    feature = example.features.feature
    feature['items$ragged_values'].int64_list.value.extend(
        ids[offsets[i]:offsets[i + 1]].tolist())
    feature['hours'].int64_list.value.extend([i % 24, (i * 7) % 25])
    feature['unused'].bytes_list.value.append(b'payload' * 8)
    yield example.SerializeToString()


def _write(path, records):
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for record in records:
      writer.write(record)


def _time_numpy_path(records):
  decoder = decoding.make_decoder([f.column for f in FEATURES])
  accumulator = accumulators.DatasetAccumulator(
      {f.name: (f.num_ids, f.keeps_id_counts) for f in FEATURES})
  start = time.perf_counter()
  for i in range(0, len(records), 1000):
    batch = decoder.DecodeBatch(records[i:i + 1000])
    accumulator.add(batch.num_rows,
                    decoding.record_batch_columns(batch, FEATURES))
  return time.perf_counter() - start


def _decode(records: Sequence[bytes]) -> pa.RecordBatch:
  """All features of serialized tf.Examples, as list columns."""
  return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
      list(records))


def _lengths_and_values(column: pa.Array) -> Tuple[np.ndarray, pa.Array]:
  """Row lengths (missing rows: 0) and flat values of a list column."""
  lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
  return lengths.astype(np.int64), column.flatten()


def _sampled_column(column: pa.Array, count: int,
                    rng: np.random.Generator) -> pa.Array:
  """`count` rows: lengths drawn from the column's, values from its values."""
  lengths, values = _lengths_and_values(column)
  new_lengths = rng.choice(lengths, size=count)
  offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
  picks = rng.integers(0, max(len(values), 1), size=int(offsets[-1]))
  new_values = values.take(pa.array(picks)) if len(values) else values
  return pa.LargeListArray.from_arrays(pa.array(offsets), new_values)


def amplify(records: Sequence[bytes], factor: int,
            seed: int = 1) -> Iterator[bytes]:
  """Yields `factor * len(records)` examples like `records`.

  Each feature's row lengths are drawn from its empirical length distribution
  in `records` and its values (ids) from its empirical value distribution, so
  the amplified data keeps both distributions (its id space is the one seen in
  `records`).
  """
  rng = np.random.default_rng(seed)
  base = _decode(records)
  encoder = example_coder.RecordBatchToExamplesEncoder()
  remaining = factor * len(records)
  while remaining > 0:
    count = min(remaining, _AMPLIFY_CHUNK)
    batch = pa.RecordBatch.from_arrays(
        [_sampled_column(base.column(i), count, rng)
         for i in range(base.num_columns)], schema=base.schema)
    yield from encoder.encode(batch)
    remaining -= count


def distribution_summary(records: Sequence[bytes],
                         column: str = 'items$ragged_values'
                        ) -> Dict[str, float]:
  """Length and id statistics of one column, to check `amplify`."""
  batch = _decode(records)
  lengths, values = _lengths_and_values(
      batch.column(batch.schema.get_field_index(column)))
  ids = values.to_numpy(zero_copy_only=False)
  _, counts = np.unique(ids, return_counts=True)
  top = np.sort(counts)[-10:].sum()
  return {'examples': len(records), 'mean_length': float(lengths.mean()),
          'p50_length': float(np.percentile(lengths, 50)),
          'p99_length': float(np.percentile(lengths, 99)),
          'distinct_ids': int(len(counts)),
          'top10_id_share': float(top / max(len(ids), 1))}


def prepare_inputs(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Writes the base examples (1x) and their amplifications under root."""
  base = list(_serialized_examples(case['base_examples']))
  files = {}
  for scale in case['scales']:
    records = base if scale == 1 else list(amplify(base, scale, seed=scale))
    path = os.path.join(case['root'], f'examples_{scale}x.gz')
    _write(path, records)
    files[str(scale)] = {'path': path, **distribution_summary(records)}
  return {'files': files}


def run_embedding_stats(path: str, output_dir: str) -> None:
  """EmbeddingStatsGen's Beam transform on one split."""
  options = pipeline_options.PipelineOptions()
  with beam.Pipeline(options=options) as pipeline:
    _ = pipeline | beam_stats.GenerateEmbeddingStatistics(
        {'train': path}, FEATURES, config.TruncationPolicy(), output_dir)


def run_tfdv(path: str, output_dir: str) -> None:
  """StatisticsGen's transform (TFDV GenerateStatistics) on one split."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  tfdv.generate_statistics_from_tfrecord(
      path, output_path=os.path.join(output_dir, 'FeatureStats.tfrecord'),
      stats_options=tfdv.StatsOptions(),
      pipeline_options=pipeline_options.PipelineOptions())


_RUNNERS = {SYSTEM_EMBEDDING_STATS: run_embedding_stats,
            SYSTEM_TFDV: run_tfdv}


def time_system(system: str, path: str, num_examples: int, reps: int,
                warmup: int = 1) -> Dict[str, Any]:
  """Runs `system` on `path` warmup + reps times; times the reps."""
  seconds = []
  with tempfile.TemporaryDirectory(prefix='stats_bench_') as root:
    for index in range(warmup + reps):
      output_dir = os.path.join(root, f'run_{index}')
      start = time.perf_counter()
      _RUNNERS[system](path, output_dir)
      if index >= warmup:
        seconds.append(time.perf_counter() - start)
  return {'seconds': measure.summarize(seconds),
          'examples_per_second': measure.summarize(
              [num_examples / s for s in seconds])}


def run_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """One system on one prepared file (worker entry point)."""
  return time_system(case['system'], case['path'], case['num_examples'],
                     case['reps'], case.get('warmup', 1))


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--num_examples', type=int, default=100_000)
  parser.add_argument('--reps', type=int, default=1)
  args = parser.parse_args()
  records = list(_serialized_examples(args.num_examples))
  with tempfile.TemporaryDirectory() as root:
    path = os.path.join(root, 'train.gz')
    _write(path, records)
    timings = {system: time_system(system, path, args.num_examples, args.reps)
               for system in SYSTEMS}
  numpy_seconds = _time_numpy_path(records)
  rows = [(SYSTEM_LABELS[s], t['seconds']['median']) for s, t in
          timings.items()] + [('decode + accumulate only', numpy_seconds)]
  for label, seconds in rows:
    print(f'{label}: {seconds:.2f} s, '
          f'{args.num_examples / seconds:,.0f} examples/s')
  speedup = measure.ratio(timings[SYSTEM_TFDV]['seconds']['median'],
                          timings[SYSTEM_EMBEDDING_STATS]['seconds']['median'])
  print(f'TFDV time / EmbeddingStatsGen time: {speedup:.2f}')


if __name__ == '__main__':
  main()
