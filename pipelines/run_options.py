"""Command-line options every runner shares (local, Kubeflow v2), any example."""

import argparse
import os
import re
import warnings
from typing import Any, Dict

_PIPELINE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


def quiet_startup() -> None:
  """For a runner's command line, before TensorFlow is imported: TensorFlow's
  C++ info and warning lines off (errors still print), and the Google client
  libraries' import-time warnings about future Python support."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  warnings.filterwarnings('ignore', category=FutureWarning)


def local_parser(description: str,
                 default_pipeline_name: str) -> argparse.ArgumentParser:
  """A local runner's parser: --output-dir and ``add_run_options``."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--output-dir', default='output',
                      help='where pipeline outputs and metadata go')
  add_run_options(parser, default_pipeline_name)
  return parser


def positive_int(text: str) -> int:
  """An argparse type: an int >= 1 (0 is refused, never read as "unset")."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
  return value


def pipeline_name(text: str) -> str:
  """An argparse type: letters, digits, '_', '-', '.'; no path separators."""
  if not _PIPELINE_NAME.match(text) or text in ('.', '..'):
    raise argparse.ArgumentTypeError(
        f'{text!r} is not a pipeline name: use letters, digits, "_", "-" and '
        '"." (it names a folder under the output directory)')
  return text


def add_run_options(parser: argparse.ArgumentParser,
                    default_pipeline_name: str) -> None:
  """Adds --pipeline-name, --train-steps and --no-cache."""
  parser.add_argument('--pipeline-name', default=default_pipeline_name,
                      type=pipeline_name)
  parser.add_argument('--train-steps', type=positive_int, default=None,
                      help='Trainer steps (default: the example\'s)')
  parser.add_argument('--no-cache', action='store_true',
                      help='rerun every component')


def training_overrides(args: argparse.Namespace, **fixed: Any
                      ) -> Dict[str, Any]:
  """TrainingConfig fields set on the command line, plus ``fixed`` ones."""
  overrides = dict(fixed)
  if args.train_steps is not None:
    overrides['train_steps'] = args.train_steps
  return overrides
