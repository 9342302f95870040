"""Command-line options every movies runner shares (local, Kubeflow v2)."""

import argparse
from typing import Any, Dict

PIPELINE_NAME = 'movies'


def add_run_options(parser: argparse.ArgumentParser) -> None:
  """Adds --pipeline-name, --sample-rows, --train-steps and --no-cache."""
  parser.add_argument('--pipeline-name', default=PIPELINE_NAME)
  parser.add_argument('--sample-rows', type=int, default=None,
                      help='read only the first N films (quick runs)')
  parser.add_argument('--train-steps', type=int, default=None,
                      help='Trainer steps (default: the demo configuration)')
  parser.add_argument('--no-cache', action='store_true',
                      help='rerun every component')


def training_overrides(args: argparse.Namespace, **fixed: Any
                      ) -> Dict[str, Any]:
  """TrainingConfig fields set on the command line, plus ``fixed`` ones."""
  overrides = dict(fixed)
  if args.train_steps:
    overrides['train_steps'] = args.train_steps
  return overrides
