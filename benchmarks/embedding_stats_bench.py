"""EmbeddingStatsGen against TFDV on the demo's transformed examples.

`prepare_inputs` builds the demo's transformed training examples once
(`benchmarks.movies_transformed`: the films of the bundled movies database
through MoviesExampleGen's conversion and split and the demo
`preprocessing_fn`) and writes them as gzipped TFRecords: the 1x file, and
for each larger scale k a file holding the same records k times over (exact
copies, in the same order), so that every statistic of the k-x file is k
times the 1x one. A manifest (`MANIFEST_FILE`) records the files, their
example counts and the measured features.

`run_case` times one system on one file, repeated: this product's
`GenerateEmbeddingStatistics` over the features the demo's EmbeddingStatsGen
measures, or TFDV's `GenerateStatistics` (what StatisticsGen runs, through
`tfdv.generate_statistics_from_tfrecord`), both on the Beam DirectRunner with
default options. `benchmarks.run_all` runs each in its own worker process.

  TF_USE_LEGACY_KERAS=1 .venv/bin/python -m benchmarks.embedding_stats_bench \
      --scales 1 16 --reps 3
"""

import argparse
import json
import os
import tempfile
import time
from typing import Any, Dict, List, Mapping, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.options import pipeline_options

from benchmarks import measure
from benchmarks import movies_transformed
from components.embedding_stats import beam_stats
from components.embedding_stats import config
from components.embedding_stats import decoding
from components.embedding_stats import features as features_lib
from components.embedding_stats import statistics

SYSTEM_EMBEDDING_STATS = 'embedding_stats'
SYSTEM_TFDV = 'tfdv'
SYSTEMS = (SYSTEM_EMBEDDING_STATS, SYSTEM_TFDV)
SYSTEM_LABELS = {
    SYSTEM_EMBEDDING_STATS: 'EmbeddingStatsGen (GenerateEmbeddingStatistics)',
    SYSTEM_TFDV: 'StatisticsGen equivalent (tfdv GenerateStatistics)',
}
MANIFEST_FILE = 'manifest.json'
# The sequence feature whose distribution the report shows.
SEQUENCE_FEATURE = 'cast_xf'


def _write(path: str, records: Sequence[bytes], times: int) -> None:
  """Writes `records` `times` over to one gzipped TFRecord file."""
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for _ in range(times):
      for record in records:
        writer.write(record)


def sequence_summary(records: Sequence[bytes],
                     feature: features_lib.MeasuredFeature) -> Dict[str, Any]:
  """Length and id statistics of one measured feature in `records`."""
  batch = decoding.decode_examples(records, [feature.column])
  lengths, ids = decoding.record_batch_columns(batch, [feature])[feature.name]
  _, counts = np.unique(ids, return_counts=True)
  return {'feature': feature.name, 'examples': len(records),
          'mean_length': float(lengths.mean()),
          'p50_length': float(np.percentile(lengths, 50)),
          'p99_length': float(np.percentile(lengths, 99)),
          'max_length': int(lengths.max()),
          'distinct_ids': int(len(counts)), 'id_space': feature.num_ids,
          'top10_id_share': float(np.sort(counts)[-10:].sum() /
                                  max(len(ids), 1))}


def prepare_inputs(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Writes the 1x examples and their k-fold repetitions under case['root'].

  `case['sample_films']` (0 or absent: all) limits the films read, for smoke
  runs.
  """
  root = case['root']
  start = time.perf_counter()
  data = movies_transformed.transform_training_split(
      root, case.get('sample_films') or None)
  transform_seconds = time.perf_counter() - start
  records, measured = data['records'], data['features']
  start = time.perf_counter()
  files = {}
  for scale in case['scales']:
    path = os.path.join(root, f'examples_{scale}x.gz')
    _write(path, records, scale)
    files[str(scale)] = {'path': path, 'examples': scale * len(records),
                         'bytes': os.path.getsize(path)}
  sequence = next(f for f in measured if f.name == SEQUENCE_FEATURE)
  manifest = {
      'films': data['films'], 'base_examples': len(records),
      'mean_example_bytes': float(np.mean([len(r) for r in records])),
      'features_path': data['features_path'], 'files': files,
      'features': [f.name for f in measured],
      'sequence': sequence_summary(records, sequence),
      'prepare_seconds': {'transform': transform_seconds,
                  'write': time.perf_counter() - start}}
  with open(os.path.join(root, MANIFEST_FILE), 'w', encoding='utf-8') as f:
    json.dump(manifest, f, indent=1)
  return manifest


def read_manifest(root: str) -> Dict[str, Any]:
  with open(os.path.join(root, MANIFEST_FILE), encoding='utf-8') as f:
    return json.load(f)


def run_embedding_stats(path: str, output_dir: str,
                        measured: Sequence[features_lib.MeasuredFeature]
                        ) -> None:
  """EmbeddingStatsGen's Beam transform on one split."""
  options = pipeline_options.PipelineOptions()
  with beam.Pipeline(options=options) as pipeline:
    _ = pipeline | beam_stats.GenerateEmbeddingStatistics(
        {'train': path}, measured, config.TruncationPolicy(), output_dir)


def run_tfdv(path: str, output_dir: str,
             measured: Sequence[features_lib.MeasuredFeature]) -> None:
  """StatisticsGen's transform (TFDV GenerateStatistics) on one split.

  TFDV computes its statistics over every feature; `measured` is unused.
  """
  del measured
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  tfdv.generate_statistics_from_tfrecord(
      path, output_path=os.path.join(output_dir, 'FeatureStats.tfrecord'),
      stats_options=tfdv.StatsOptions(),
      pipeline_options=pipeline_options.PipelineOptions())


_RUNNERS = {SYSTEM_EMBEDDING_STATS: run_embedding_stats,
            SYSTEM_TFDV: run_tfdv}


def _check_counted(system: str, output_dir: str, num_examples: int) -> None:
  """Fails unless EmbeddingStatsGen's statistics counted every example."""
  if system != SYSTEM_EMBEDDING_STATS:
    return
  counted = statistics.load_embedding_statistics(
      output_dir).splits['train'].num_examples
  if counted != num_examples:
    raise AssertionError(f'{output_dir}: {counted} examples counted, '
                         f'{num_examples} written.')


def time_system(system: str, path: str, num_examples: int,
                measured: Sequence[features_lib.MeasuredFeature], reps: int,
                warmup: int = 1) -> Dict[str, Any]:
  """Runs `system` on `path` warmup + reps times; times the reps."""
  seconds = []
  rss_before = measure.current_rss_bytes()
  with tempfile.TemporaryDirectory(prefix='stats_bench_') as root:
    for index in range(warmup + reps):
      output_dir = os.path.join(root, f'run_{index}')
      start = time.perf_counter()
      _RUNNERS[system](path, output_dir, measured)
      if index >= warmup:
        seconds.append(time.perf_counter() - start)
      _check_counted(system, output_dir, num_examples)
  return {'seconds': measure.summarize(seconds),
          'examples_per_second': measure.summarize(
              [num_examples / s for s in seconds]),
          'num_examples': num_examples, 'rss_before_runs_bytes': rss_before}


def run_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """One system on one prepared scale (worker entry point)."""
  manifest = read_manifest(case['root'])
  file = manifest['files'][str(case['scale'])]
  measured = movies_transformed.read_features(manifest['features_path'])
  return time_system(case['system'], file['path'], file['examples'], measured,
                     case['reps'], case.get('warmup', 1))


def main(argv: Sequence[str] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--scales', type=int, nargs='+', default=[1, 16])
  parser.add_argument('--reps', type=int, default=1)
  parser.add_argument('--sample_films', type=int, default=0,
                      help='read only this many films (0: all)')
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as root:
    manifest = prepare_inputs({'root': root, 'scales': args.scales,
                               'sample_films': args.sample_films})
    print(f'{manifest["base_examples"]:,} transformed training examples of '
          f'{manifest["films"]:,} films; prepared in '
          f'{manifest["prepare_seconds"]["transform"]:.1f} s')
    for scale in args.scales:
      timings: Dict[str, List[float]] = {}
      for system in SYSTEMS:
        result = run_case({'root': root, 'scale': scale, 'system': system,
                           'reps': args.reps, 'warmup': 0})
        timings[system] = result['seconds']['median']
        print(f'{scale}x {SYSTEM_LABELS[system]}: {timings[system]:.2f} s, '
              f'{result["num_examples"] / timings[system]:,.0f} examples/s')
      print(f'{scale}x TFDV time / EmbeddingStatsGen time: '
            f'{timings[SYSTEM_TFDV] / timings[SYSTEM_EMBEDDING_STATS]:.2f}')


if __name__ == '__main__':
  main()
