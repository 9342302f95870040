"""What the movies example adds to the generic run summary: dropped films."""

from typing import Any, Dict, List

from pipelines import run_summary
from pipelines.movies.example_gen import movie_examples

EXAMPLE_GEN = 'MoviesExampleGen'


def _dropped_rows_section(node: run_summary.NodeRun) -> Dict[str, Any]:
  examples = node.outputs['examples'][0]
  return {'dropped_rows': {
      reason: examples.custom_properties[f'dropped_{reason}'].int_value
      for reason in movie_examples.DROP_REASONS
      if f'dropped_{reason}' in examples.custom_properties
  }}


def dropped_rows_lines(summary: Dict[str, Any]) -> List[str]:
  if 'dropped_rows' not in summary:
    return []
  return ['Rows dropped:'] + [
      f'  {k:<24} {v:>8,}' for k, v in summary['dropped_rows'].items()]


SECTIONS = {EXAMPLE_GEN: _dropped_rows_section}
