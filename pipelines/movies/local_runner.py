"""Runs the movies pipeline locally: LocalDagRunner, SQLite metadata, DirectRunner.

    python -m pipelines.movies.local_runner [--output-dir output] [--sample-rows N]

A rerun skips the components whose inputs did not change (caching). At the end
it prints a summary and writes it to ``<output-dir>/<pipeline-name>/summary.json``.

``--warm-start-from-year YEAR`` shows continuous training, in the pipeline
``<pipeline-name>-warm-start``: a first run on the films up to YEAR, then a
run on all films whose Trainer starts from the first run's Model (a Resolver
feeds ``base_model``; tables remapped to the new vocabularies), then the same
run cold; the summary compares the warm and cold eval metrics after the same
number of steps (``warm_start_comparison`` in ``summary.json``).
"""

import argparse
import os
import sys
from typing import List, Optional

from pipelines import run_options  # Imports no TensorFlow.

run_options.quiet_startup()

from pipelines import local  # pylint: disable=g-import-not-at-top
from pipelines import progress
from pipelines import summary as summary_lib
from pipelines.movies import pipeline
from pipelines.movies import summary


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = run_options.local_parser(__doc__.split('\n')[0],
                                   pipeline.PIPELINE_NAME)
  pipeline.add_data_options(parser)
  parser.add_argument('--database-uri', default=None,
                      help='another movies SQLite file (default: bundled)')
  parser.add_argument('--warm-start-from-year', type=run_options.positive_int,
                      default=None, metavar='YEAR',
                      help='train on films up to YEAR, then on all films '
                      'warm from that model and cold; compare the two')
  parser.add_argument('--beam-arg', action='append', default=[],
                      help='extra Beam pipeline option, e.g. '
                      '--beam-arg=--direct_num_workers=2')
  return parser.parse_args(argv)


def run(args: argparse.Namespace, pipeline_name: Optional[str] = None,
        **pipeline_args) -> dict:
  """Runs the pipeline and returns its summary (also written as JSON)."""
  pipeline_name = pipeline_name or args.pipeline_name
  paths = local.local_paths(args.output_dir, pipeline_name)
  movies_pipeline = pipeline.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=paths.pipeline_root,
      metadata_connection_config=paths.metadata_connection_config,
      beam_pipeline_args=['--runner=DirectRunner'] + args.beam_arg,
      database_uri=args.database_uri,
      sample_rows=args.sample_rows,
      enable_cache=not args.no_cache,
      training_config=pipeline.default_training_config(
          **run_options.training_overrides(args)),
      **pipeline_args)
  return local.run(movies_pipeline, paths, summary.SECTIONS)


def run_warm_start_demo(args: argparse.Namespace) -> dict:
  """Films up to the year, then all films warm and cold; compared."""
  name = f'{args.pipeline_name}-warm-start'
  print(f'Warm-start demo 1/3: films up to {args.warm_start_from_year}, cold')
  base = run(args, name, until_year=args.warm_start_from_year)
  print('Warm-start demo 2/3: all films, warm from that model')
  warm = run(args, name, warm_start=True)
  print('Warm-start demo 3/3: all films, cold')
  cold = run(args, name)
  warm['warm_start_comparison'] = {
      'until_year': args.warm_start_from_year,
      'steps': warm['training']['steps'],
      'base_eval_metrics': base['training']['eval_metrics'],
      'warm_eval_metrics': warm['training']['eval_metrics'],
      'cold_eval_metrics': cold['training']['eval_metrics'],
  }
  summary_lib.write_summary(warm, os.path.dirname(warm['summary_path']))
  return warm


def comparison_lines(result: dict) -> List[str]:
  """Warm vs cold eval metrics of the demo, one line per metric."""
  comparison = result.get('warm_start_comparison')
  if not comparison:
    return []
  lines = [f"Warm vs cold after {comparison['steps']} steps (base: films up "
           f"to {comparison['until_year']}):"]
  for name, warm in comparison['warm_eval_metrics'].items():
    cold = comparison['cold_eval_metrics'].get(name, float('nan'))
    lines.append(f'  {name:<10} warm {warm:.4f}  cold {cold:.4f}')
  return lines


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  progress.show_progress()
  result = (run_warm_start_demo(args) if args.warm_start_from_year else
            run(args))
  print(summary_lib.format_summary(result, summary.dropped_rows_lines))
  print('\n'.join(comparison_lines(result)))
  print(f"Artifacts under {os.path.dirname(result['summary_path'])}")
  print(f"Summary written to {result['summary_path']}")
  return 0


if __name__ == '__main__':
  sys.exit(main())
