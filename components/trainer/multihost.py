"""Multi-host TPU slices: which host writes, and how hosts share the input.

A slice of several TPU VM hosts (v5p-16, v6e-16, ...) runs the job's
container on every host (a Vertex AI worker pool with one replica per host).
Each host reads its own share of the records through
``strategy.distribute_datasets_from_function`` (``inputs.make_dataset`` with
the host's ``tf.distribute.InputContext``); checkpoints, exports and the
training result are written by the chief only, so that no two hosts write
the same files.
"""

import json
import os
from typing import Mapping, Optional


def task_index(environ: Optional[Mapping[str, str]] = None) -> int:
  """This host's index in the job: Vertex AI's ``CLUSTER_SPEC`` or TF_CONFIG.

  0 when neither is set (a single host).
  """
  environ = os.environ if environ is None else environ
  for variable in ('CLUSTER_SPEC', 'TF_CONFIG'):
    text = environ.get(variable)
    if text:
      task = json.loads(text).get('task', {})
      return int(task.get('index', 0))
  return 0


def is_chief(environ: Optional[Mapping[str, str]] = None) -> bool:
  """Whether this host writes checkpoints, exports and results."""
  return task_index(environ) == 0
