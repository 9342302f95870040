"""Runs the interactions pipeline locally on a generated log.

    python -m pipelines.interactions.local_runner [--output-dir output] \\
        [--num-users 300] [--new-user-share 0.3] [--train-steps N]

Writes the synthetic log under ``<output-dir>/<pipeline-name>/data`` once per
set of options (unless ``--data-root`` names existing TFRecords with
``train/`` and ``eval/`` folders), runs the pipeline with ``LocalDagRunner`` and prints the summary.
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
from pipelines.interactions import data
from pipelines.interactions import pipeline


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = run_options.local_parser(__doc__.split('\n')[0],
                                   pipeline.PIPELINE_NAME)
  parser.add_argument('--data-root', default=None,
                      help='existing TFRecords (train/ and eval/ folders)')
  parser.add_argument('--num-users', type=run_options.positive_int,
                      default=data.LogOptions.num_users)
  parser.add_argument('--new-user-share', type=float, default=0.0,
                      help='share of users seen only in evaluation')
  return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
  """Writes the log (if needed), runs the pipeline, returns its summary."""
  paths = local.local_paths(args.output_dir, args.pipeline_name)
  data_root = args.data_root
  if data_root is None:
    data_root = os.path.join(paths.output_dir, 'data')
    data.ensure_log(data_root, data.LogOptions(
        num_users=args.num_users, new_user_share=args.new_user_share))
  interactions = pipeline.create_pipeline(
      pipeline_name=args.pipeline_name,
      pipeline_root=paths.pipeline_root,
      data_root=data_root,
      metadata_connection_config=paths.metadata_connection_config,
      beam_pipeline_args=['--runner=DirectRunner'],
      enable_cache=not args.no_cache,
      training_config=pipeline.default_training_config(
          **run_options.training_overrides(args)))
  return local.run(interactions, paths)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  progress.show_progress()
  result = run(args)
  print(summary_lib.format_summary(result))
  print(f"Summary written to {result['summary_path']}")
  return 0


if __name__ == '__main__':
  sys.exit(main())
