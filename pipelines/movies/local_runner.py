"""Runs the movies pipeline locally: LocalDagRunner, SQLite metadata, DirectRunner.

    python -m pipelines.movies.local_runner [--output-dir output] [--sample-rows N]

A rerun skips the components whose inputs did not change (caching). At the end
it prints a summary and writes it to ``<output-dir>/<pipeline-name>/summary.json``.
"""

import argparse
import os
import sys
import warnings
from typing import List, Optional

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Google client libraries warn about future Python support on import.
warnings.filterwarnings('ignore', category=FutureWarning)

from pipelines import local  # pylint: disable=g-import-not-at-top
from pipelines import progress
from pipelines import run_options
from pipelines import summary as summary_lib
from pipelines.movies import pipeline
from pipelines.movies import summary


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output-dir', default='output',
                      help='where pipeline outputs and metadata go')
  run_options.add_run_options(parser, pipeline.PIPELINE_NAME)
  pipeline.add_data_options(parser)
  parser.add_argument('--database-uri', default=None,
                      help='another movies SQLite file (default: bundled)')
  parser.add_argument('--beam-arg', action='append', default=[],
                      help='extra Beam pipeline option, e.g. '
                      '--beam-arg=--direct_num_workers=2')
  return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
  """Runs the pipeline and returns its summary (also written as JSON)."""
  paths = local.local_paths(args.output_dir, args.pipeline_name)
  movies_pipeline = pipeline.create_pipeline(
      pipeline_name=args.pipeline_name,
      pipeline_root=paths.pipeline_root,
      metadata_connection_config=paths.metadata_connection_config,
      beam_pipeline_args=['--runner=DirectRunner'] + args.beam_arg,
      database_uri=args.database_uri,
      sample_rows=args.sample_rows,
      enable_cache=not args.no_cache,
      training_config=pipeline.default_training_config(
          **run_options.training_overrides(args)))
  return local.run(movies_pipeline, paths, summary.SECTIONS)


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  progress.show_progress()
  result = run(args)
  print(summary_lib.format_summary(result, summary.dropped_rows_lines))
  print(f"Artifacts under {os.path.dirname(result['summary_path'])}")
  print(f"Summary written to {result['summary_path']}")
  return 0


if __name__ == '__main__':
  sys.exit(main())
