"""The TPU embedding Trainer: TFX component, training entry point, tasks, models.

Public API:
  TpuEmbeddingTrainer: the TFX component (``component``).
  TrainingConfig, TaskConfig: how to train and what for (``config``, ``tasks``).
  run_training, TrainingResult: the entry point the executor wraps
    (``training``), for notebooks and custom orchestrators.
  EmbeddingMlp, masked_mean: a ready-made dense tower (``models``).
See ``components/trainer/README.md``.
"""

from components import lazy_exports

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

__getattr__, __dir__ = lazy_exports.module_attributes(
    __name__, _EXPORTS, globals())
