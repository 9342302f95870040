"""Runs benchmark cases in this process and writes their results as JSON.

  python -m benchmarks.worker --cases cases.json --results results.json

Each case is a dict whose 'kind' names the function that runs it. The results
file is rewritten after every case, so the cases finished before a crash are
kept. Each result carries the process's peak RSS (VmHWM) when its case ended;
with one case per process (the default of `run_all`) that is the case's own.
"""

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, Mapping

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from benchmarks import measure  # pylint: disable=g-import-not-at-top


_RUNNERS = {
    'prepare_movies': ('benchmarks.training_bench', 'prepare_movies'),
    'train_movies': ('benchmarks.training_bench', 'run_movies_case'),
    'input_movies': ('benchmarks.training_bench', 'run_input_case'),
    'train_vocab': ('benchmarks.training_bench', 'run_vocabulary_case'),
    'train_vocab_same_ids': ('benchmarks.training_bench',
                             'run_vocabulary_case'),
    'vocab_growth': ('benchmarks.training_bench', 'run_growth_case'),
    'sparse_kernel': ('benchmarks.training_bench', 'run_sparse_kernel_case'),
    'prepare_stats': ('benchmarks.embedding_stats_bench', 'prepare_inputs'),
    'stats': ('benchmarks.embedding_stats_bench', 'run_case'),
    'warm_remap': ('benchmarks.warm_start_bench', 'run_remap_case'),
    'warm_curve': ('benchmarks.warm_start_bench', 'run_warm_curve_case'),
    'oov_rows': ('benchmarks.oov_rows_bench', 'run_case'),
}


def _runner(kind: str) -> Callable[[Mapping[str, Any]], Dict[str, Any]]:
  """The function running cases of `kind`; its module is imported on demand."""
  if kind not in _RUNNERS:
    raise ValueError(f'Unknown case kind {kind!r}; known: {sorted(_RUNNERS)}.')
  module_name, function_name = _RUNNERS[kind]
  return getattr(importlib.import_module(module_name), function_name)


def _run(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Runs one case; an exception becomes an 'error' entry of its result."""
  start = time.perf_counter()
  try:
    result = _runner(case['kind'])(case)
  except Exception as e:  # pylint: disable=broad-except
    return {'case': dict(case), 'error': f'{type(e).__name__}: {e}',
            'traceback': traceback.format_exc()[-4000:]}
  result['case'] = dict(case)
  result['case_seconds'] = time.perf_counter() - start
  result['peak_rss_bytes'] = measure.peak_rss_bytes()
  return result


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--cases', required=True)
  parser.add_argument('--results', required=True)
  args = parser.parse_args()
  with open(args.cases, encoding='utf-8') as f:
    cases = json.load(f)
  results = []
  for case in cases:
    results.append(_run(case))
    with open(args.results, 'w', encoding='utf-8') as f:
      json.dump(results, f)
  return 0


if __name__ == '__main__':
  sys.exit(main())
