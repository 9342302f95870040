"""Runs every benchmark and writes BENCHMARKS.md (`make bench`).

  make bench [BENCH_ARGS='--smoke --output bench.md --json bench.json']

Each measured configuration runs in its own worker subprocess
(`benchmarks.worker`), so that its peak RSS is its own. `--smoke` runs tiny
sizes, 2 repetitions, all cases in one worker (its RSS figures are then those
of the shared process), and skips the demo-model training (whose Transform
step alone takes half a minute) to stay well under a minute; its statistics
cases still run the demo Transform, on the first 200 films only. Timings are
medians over the repetitions, with min and max; every ratio is computed from
figures of the same run.
"""

import argparse
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

from benchmarks import measure
from benchmarks import pipeline_times
from benchmarks import report

ROUTES = ('product', 'keras', 'tpu_serving')
OPTIMIZERS = ('adagrad', 'adam')
STATS_SYSTEMS = ('embedding_stats', 'tfdv')


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The sizes of one benchmark run."""
  reps: int
  warmup_steps: int
  rep_seconds: float
  min_steps: int
  max_steps: int
  movies_train_rows: int
  movies_eval_rows: int
  movies_batch_size: int
  movies_num_batches: int
  movies_input_batches: int
  vocabulary_sizes: Tuple[int, ...]
  vocabulary_batch_size: int
  vocabulary_ids_per_row: int
  vocabulary_dimension: int
  vocabulary_num_batches: int
  stats_sample_films: int  # 0: all films of the demo database.
  stats_scales: Tuple[int, ...]
  stats_warmup: int
  one_worker: bool
  movies: bool
  warm_remap_rows: Tuple[int, ...] = (10**6,)
  warm_curve_steps: Tuple[int, ...] = (10, 30)
  oov_rows_train_steps: int = 0  # 0: no OOV-rows case.


FULL = Sizes(
    reps=5, warmup_steps=2, rep_seconds=0.4, min_steps=3, max_steps=200,
    movies_train_rows=2048, movies_eval_rows=128, movies_batch_size=256,
    movies_num_batches=8, movies_input_batches=64,
    vocabulary_sizes=(10**4, 10**5, 10**6),
    vocabulary_batch_size=512, vocabulary_ids_per_row=20,
    vocabulary_dimension=64, vocabulary_num_batches=8,
    stats_sample_films=0, stats_scales=(1, 4, 16), stats_warmup=0,
    one_worker=False, movies=True, oov_rows_train_steps=200)

SMOKE = Sizes(
    reps=2, warmup_steps=1, rep_seconds=0.02, min_steps=2, max_steps=4,
    movies_train_rows=64, movies_eval_rows=16, movies_batch_size=16,
    movies_num_batches=2, movies_input_batches=2, vocabulary_sizes=(1000,),
    vocabulary_batch_size=32,
    vocabulary_ids_per_row=5, vocabulary_dimension=8,
    vocabulary_num_batches=2, stats_sample_films=200, stats_scales=(1, 2),
    stats_warmup=0, one_worker=True, movies=False,
    warm_remap_rows=(1000,), warm_curve_steps=())


def _timing(sizes: Sizes) -> Dict[str, Any]:
  return {'reps': sizes.reps, 'warmup_steps': sizes.warmup_steps,
          'rep_seconds': sizes.rep_seconds, 'min_steps': sizes.min_steps,
          'max_steps': sizes.max_steps}


def movies_cases(sizes: Sizes, root: str) -> List[Dict[str, Any]]:
  """Preparing the synthetic movies' Transform output, then the routes."""
  movies_root = os.path.join(root, 'movies')
  cases = [{'kind': 'prepare_movies', 'root': movies_root,
            'train_rows': sizes.movies_train_rows,
            'eval_rows': sizes.movies_eval_rows}]
  data = {'root': movies_root,
          'examples_dir': os.path.join(movies_root, 'examples'),
          'transform_dir': os.path.join(movies_root, 'transform_graph'),
          'batch_size': sizes.movies_batch_size}
  cases.append({'kind': 'input_movies', 'optimizer': OPTIMIZERS[0],
                'input_batches': sizes.movies_input_batches,
                'reps': sizes.reps, **data})
  for optimizer in OPTIMIZERS:
    for route in ROUTES:
      cases.append({
          'kind': 'train_movies', 'route': route, 'optimizer': optimizer,
          'num_batches': sizes.movies_num_batches, **data, **_timing(sizes)})
  return cases


def vocabulary_cases(sizes: Sizes) -> List[Dict[str, Any]]:
  """One table per vocabulary size, every route and optimizer; TensorFlow's
  sparse kernels alone at each size."""
  batches = {'dimension': sizes.vocabulary_dimension,
             'batch_size': sizes.vocabulary_batch_size,
             'ids_per_row': sizes.vocabulary_ids_per_row,
             'num_batches': sizes.vocabulary_num_batches, **_timing(sizes)}
  cases = []
  for optimizer in OPTIMIZERS:
    for vocabulary_size in sizes.vocabulary_sizes:
      for route in ROUTES:
        cases.append({
            'kind': 'train_vocab', 'route': route, 'optimizer': optimizer,
            'vocabulary_size': vocabulary_size, **batches})
    if len(sizes.vocabulary_sizes) > 1:
      # The largest table looked up with the smallest table's ids: what the
      # table's size alone costs.
      cases.append({
          'kind': 'train_vocab_same_ids', 'route': 'product',
          'optimizer': optimizer,
          'vocabulary_size': max(sizes.vocabulary_sizes),
          'id_range': min(sizes.vocabulary_sizes), **batches})
      # The smallest and largest tables' steps in alternation: the growth
      # between them, robust to a slow spell of the machine.
      cases.append({
          'kind': 'vocab_growth', 'route': 'product', 'optimizer': optimizer,
          'vocabulary_sizes': (min(sizes.vocabulary_sizes),
                               max(sizes.vocabulary_sizes)), **batches})
  for vocabulary_size in sizes.vocabulary_sizes:
    cases.append({'kind': 'sparse_kernel', 'vocabulary_size': vocabulary_size,
                  **batches})
  return cases


def stats_cases(sizes: Sizes, root: str) -> List[Dict[str, Any]]:
  """Preparing the demo's transformed examples at each scale, then both
  systems on each."""
  stats_root = os.path.join(root, 'stats')
  os.makedirs(stats_root, exist_ok=True)
  cases = [{'kind': 'prepare_stats', 'root': stats_root,
            'sample_films': sizes.stats_sample_films,
            'scales': list(sizes.stats_scales)}]
  for scale in sizes.stats_scales:
    for system in STATS_SYSTEMS:
      cases.append({
          'kind': 'stats', 'system': system, 'scale': scale,
          'root': stats_root, 'reps': sizes.reps,
          'warmup': sizes.stats_warmup})
  return cases


def warm_start_cases(sizes: Sizes) -> List[Dict[str, Any]]:
  """Remapping time per table size; the warm vs cold curve (full runs)."""
  cases = [{'kind': 'warm_remap', 'rows': rows, 'dimension': 64,
            'reps': sizes.reps} for rows in sizes.warm_remap_rows]
  if sizes.warm_curve_steps:
    cases.append({'kind': 'warm_curve', 'base_rows': 40, 'base_steps': 30,
                  'batch_size': 32, 'steps': list(sizes.warm_curve_steps)})
  return cases


def oov_rows_cases(sizes: Sizes) -> List[Dict[str, Any]]:
  """The cold-user evaluation with and without zero OOV rows."""
  if not sizes.oov_rows_train_steps:
    return []
  return [{'kind': 'oov_rows', 'train_steps': sizes.oov_rows_train_steps}]


def _describe(result: Dict[str, Any]) -> str:
  case = result['case']
  label = ' '.join(str(case[k]) for k in
                   ('kind', 'route', 'optimizer', 'vocabulary_size', 'system',
                    'scale', 'rows') if k in case)
  if 'error' in result:
    return f'{label}: ERROR {result["error"][:300]}'
  took = f' [{result.get("case_seconds", 0):.1f} s]'
  for key, unit in (('examples_per_second', 'examples/s'),
                    ('seconds', 's')):
    if isinstance(result.get(key), dict):
      return f'{label}: {result[key]["median"]:,.2f} {unit} (median){took}'
  return f'{label}: done{took}'


def run_cases(cases: Sequence[Dict[str, Any]], one_worker: bool,
              deadline: float) -> List[Dict[str, Any]]:
  """Runs each case in its own worker (or all in one); logs as they end.

  Cases not started by `deadline` (a `time.perf_counter()` value) are
  reported as skipped.
  """
  groups = [list(cases)] if one_worker else [[case] for case in cases]
  results = []
  for group in groups:
    if time.perf_counter() > deadline:
      group_results = [{'case': case, 'error': 'skipped: the time budget '
                                               '(--budget-seconds) ran out'}
                       for case in group]
    else:
      group_results = measure.run_worker(group)
    for result in group_results:
      print(_describe(result), file=sys.stderr, flush=True)
      results.append(result)
  return results


def run(sizes: Sizes, smoke: bool, metadata_path: str, pipeline_name: str,
        budget_seconds: float) -> Dict[str, Any]:
  """Runs all benchmarks; returns everything the report needs."""
  start = time.perf_counter()
  started = datetime.datetime.now(datetime.timezone.utc)
  load_before = measure.load_average()
  busy_before = measure.system_busy_seconds()
  own_before = measure.own_cpu_seconds()
  with tempfile.TemporaryDirectory(prefix='bench_') as root:
    cases = ((movies_cases(sizes, root) if sizes.movies else []) +
             vocabulary_cases(sizes) + stats_cases(sizes, root) +
             warm_start_cases(sizes) + oov_rows_cases(sizes))
    results = run_cases(cases, sizes.one_worker, start + budget_seconds)
  seconds = time.perf_counter() - start
  busy = measure.system_busy_seconds() - busy_before
  own = measure.own_cpu_seconds() - own_before
  return {
      'smoke': smoke,
      'sizes': dataclasses.asdict(sizes),
      'started_utc': started.isoformat(timespec='seconds'),
      'seconds': seconds,
      'cpu_seconds': {'machine_busy': busy, 'benchmark': own,
                      'others': max(busy - own, 0.0)},
      'load_average_before': load_before,
      'load_average_after': measure.load_average(),
      'machine': measure.machine_info(),
      'results': results,
      'pipeline': pipeline_times.component_times(metadata_path,
                                                 pipeline_name),
      'command': ' '.join(['python', '-m', 'benchmarks.run_all'] +
                          sys.argv[1:]),
  }


def main(argv: Sequence[str] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--smoke', action='store_true',
                      help='tiny sizes, 2 repetitions, one worker process')
  parser.add_argument('--output', default='BENCHMARKS.md',
                      help='where the Markdown report goes')
  parser.add_argument('--json', default=None,
                      help='also write the raw results as JSON here')
  parser.add_argument('--metadata',
                      default=pipeline_times.DEFAULT_METADATA_PATH,
                      help="the demo's ML Metadata store")
  parser.add_argument('--pipeline-name',
                      default=pipeline_times.DEFAULT_PIPELINE_NAME)
  parser.add_argument('--budget-seconds', type=float, default=780.0,
                      help='start no case after this many seconds (the '
                      'rest is reported as skipped), so that a run on a busy '
                      'machine still ends within about 15 minutes')
  args = parser.parse_args(argv)
  data = run(SMOKE if args.smoke else FULL, args.smoke, args.metadata,
             args.pipeline_name, args.budget_seconds)
  with open(args.output, 'w', encoding='utf-8') as f:
    f.write(report.render(data))
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(data, f, indent=1)
  failures = [r for r in data['results'] if 'error' in r]
  print(f'Wrote {args.output} in {data["seconds"]:.0f} s'
        f'{f"; {len(failures)} case(s) failed" if failures else ""}.',
        file=sys.stderr)
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
