"""Throughput of the embedding statistics pipeline on synthetic examples.

Writes N gzipped tf.Examples with a Zipf-distributed sequence feature (vocab
100k + 1 OOV bucket) and an identity bag, then times
`GenerateEmbeddingStatistics` on the DirectRunner, and, for reference, the
in-process NumPy path alone (decode + accumulate) without Beam.

  TF_USE_LEGACY_KERAS=1 .venv/bin/python -m benchmarks.embedding_stats_bench \
      --num_examples=200000
"""

import argparse
import os
import tempfile
import time

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components.embedding_stats import accumulators
from components.embedding_stats import beam_stats
from components.embedding_stats import config
from components.embedding_stats import decoding
from components.embedding_stats import features as features_lib

_VOCABULARY_SIZE = 100_000
FEATURES = [
    features_lib.ResolvedFeature(
        name='items', column='items$ragged_values', encoding='ragged',
        kind='vocabulary', is_sequence=True, num_ids=_VOCABULARY_SIZE + 1,
        vocabulary_size=_VOCABULARY_SIZE, num_oov_buckets=1),
    features_lib.ResolvedFeature(
        name='hours', column='hours', encoding='varlen', kind='identity',
        is_sequence=False, num_ids=24),
]


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


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--num_examples', type=int, default=100_000)
  args = parser.parse_args()
  records = list(_serialized_examples(args.num_examples))
  with tempfile.TemporaryDirectory() as root:
    _write(os.path.join(root, 'train.gz'), records)
    start = time.perf_counter()
    with beam.Pipeline() as pipeline:
      _ = pipeline | beam_stats.GenerateEmbeddingStatistics(
          {'train': os.path.join(root, 'train.gz')}, FEATURES,
          config.TruncationPolicy(), os.path.join(root, 'out'))
    beam_seconds = time.perf_counter() - start
  numpy_seconds = _time_numpy_path(records)
  for label, seconds in (('beam pipeline (DirectRunner)', beam_seconds),
                         ('decode + accumulate only', numpy_seconds)):
    print(f'{label}: {seconds:.2f} s, '
          f'{args.num_examples / seconds:,.0f} examples/s')


if __name__ == '__main__':
  main()
