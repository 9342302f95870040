"""Readable progress for local pipeline runs.

TFX and Beam log a great deal at INFO. A person running the demo wants to see
which component is running, which finished or came from the cache, and how
long it took; warnings and errors still pass through.
"""

import logging
import re
import time

_PROGRESS = re.compile(
    r'Component (?P<node>\S+) is (?P<what>running|finished)\.|'
    r'A cached execution (?P<cached>\d+) is used\.')
# Lines of long-running components that a person wants to see as they come.
_PASS_THROUGH = re.compile(
    r'^(step \d+/\d+|Training the embedding on|Embedding memory plan|'
    r'Resuming from|Evaluation:|'
    r'Serving model written)')


class ProgressFilter(logging.Filter):
  """Lets warnings through and rewrites component start/finish lines."""

  def __init__(self):
    super().__init__()
    self._started = {}
    self._cached = False

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return not _is_noise(record)
    message = record.getMessage()
    if _PASS_THROUGH.search(message):
      record.msg, record.args = '    %s', (message,)
      return True
    match = _PROGRESS.search(message)
    if not match:
      return False
    if match.group('cached'):
      self._cached = True
      return False
    node, what = match.group('node'), match.group('what')
    if what == 'running':
      self._started[node] = time.time()
      self._cached = False
      record.msg, record.args = '%-24s running ...', (node,)
    else:
      seconds = time.time() - self._started.get(node, time.time())
      how = 'taken from cache' if self._cached else 'done'
      record.msg, record.args = '%-24s %s in %.1f s', (node, how, seconds)
    return True


def _is_noise(record: logging.LogRecord) -> bool:
  """Known harmless warnings that would bury the progress lines."""
  message = record.getMessage()
  return any(text in message for text in (
      'Tables initialized inside a tf.function',
      'Discarding unparseable args',
      'You are passing instance dicts',
      'You are outputting instance dicts',
      'ArtifactQuery.property_predicate is not supported',
  ))


def show_progress() -> None:
  """Routes absl/TFX logging through a concise, timestamped progress view."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter('[%(asctime)s] %(message)s',
                                         datefmt='%H:%M:%S'))
  handler.addFilter(ProgressFilter())
  root = logging.getLogger()
  for existing in list(root.handlers):
    root.removeHandler(existing)
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  # TensorFlow's logger has a handler of its own; let the filter decide.
  tf_logger = logging.getLogger('tensorflow')
  for existing in list(tf_logger.handlers):
    tf_logger.removeHandler(existing)
  tf_logger.propagate = True
