"""Warm-start benchmarks: remapping time at 10^6 rows, warm vs cold curve.

* ``remap``: a table of ``rows`` tokens (and its Adagrad accumulator)
  remapped to a vocabulary that keeps 90% of them in another order and adds
  10% new ones: ``warm_start.map_rows`` (sorted token search) plus
  ``warm_start.remap`` of the table and its slot, pure numpy.
* ``warm_curve``: the synthetic movies of the tests; a base model trained on
  a small first vocabulary, then the same second data trained warm (from the
  base) and cold for each step count; the eval AUC and log loss of each.
"""

import os
import tempfile
import time
from typing import Any, Dict, Mapping

import numpy as np

from benchmarks import measure
from benchmarks import training_bench
from components.trainer import warm_start
from components.trainer import warm_start_state as state_lib


def _tokens(start: int, count: int) -> np.ndarray:
  return np.char.add(b'token_', np.arange(start, start + count).astype('S'))


def run_remap_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Seconds to remap a ``case['rows']``-row table and one slot."""
  rows, dim = case['rows'], case['dimension']
  rng = np.random.default_rng(0)
  old_tokens = _tokens(0, rows)
  kept = rng.permutation(old_tokens)[:rows * 9 // 10]
  new_tokens = np.concatenate([kept, _tokens(rows, rows - len(kept))])
  old = state_lib.TableRows('vocabulary', rows + 1, 1, old_tokens)
  new = state_lib.TableRows('vocabulary', rows + 1, 1, new_tokens)
  base = [rng.standard_normal((rows + 1, dim), dtype=np.float32),
          np.full((rows + 1, dim), 0.5, dtype=np.float32)]
  fresh = [rng.standard_normal((rows + 1, dim), dtype=np.float32),
           np.full((rows + 1, dim), 0.1, dtype=np.float32)]
  seconds = []
  for _ in range(case['reps']):
    start = time.perf_counter()
    mapping = warm_start.map_rows(old, new)
    for base_values, fresh_values in zip(base, fresh):
      warm_start.remap(base_values, fresh_values, mapping.sources)
    seconds.append(time.perf_counter() - start)
  return {'seconds': measure.summarize(seconds),
          'rows_kept': mapping.rows_kept, 'rows_new': mapping.rows_new}


def run_warm_curve_case(case: Mapping[str, Any]) -> Dict[str, Any]:
  """Eval metrics after each step count, warm from a base model and cold."""
  fixture = training_bench._trainer_fixture()  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory(prefix='warm_curve_') as root:
    first = fixture.build_transform_output(
        os.path.join(root, 'first'), train_rows=case['base_rows'],
        eval_rows=32, seed=5)
    second = fixture.build_transform_output(os.path.join(root, 'second'))
    overrides = dict(batch_size=case['batch_size'], log_every=10**6,
                     checkpoint_every=10**6)
    fixture.run_training(
        first, os.path.join(root, 'base'), train_steps=case['base_steps'],
        **overrides)
    base = os.path.join(root, 'base', 'model')
    curve = []
    for steps in case['steps']:
      point = {'steps': steps}
      for name, base_model in (('warm', base), ('cold', None)):
        result = fixture.run_training(
            second, os.path.join(root, f'{name}_{steps}'), train_steps=steps,
            base_model=base_model, **overrides)
        point[name] = result.eval_metrics
      curve.append(point)
  return {'curve': curve}
