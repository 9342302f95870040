"""The TPU embedding Trainer: TFX component, training entry point, tasks, models.

Public API:
  TpuEmbeddingTrainer: the TFX component (``component``).
  TrainingConfig, TaskConfig: how to train and what for (``config``, ``tasks``).
  run_training, TrainingResult: the entry point the executor wraps
    (``training``), for notebooks and custom orchestrators.
  EmbeddingMlp, masked_mean: a ready-made dense tower (``models``).
See ``components/trainer/README.md``.
"""

import importlib
from typing import Any

# Name -> module. Imported on first use: the component pulls in TFX's
# orchestration packages (seconds of start-up), which code that only trains
# or benchmarks (``from components.trainer import loop``) does not need.
_EXPORTS = {
    'TpuEmbeddingTrainer': 'component',
    'TrainingConfig': 'config',
    'EmbeddingMlp': 'models',
    'masked_mean': 'models',
    'TaskConfig': 'tasks',
    'run_training': 'training',
    'TrainingResult': 'training',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
  return getattr(module, name)


def __dir__():
  return sorted(list(globals()) + __all__)
