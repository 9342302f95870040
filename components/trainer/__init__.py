"""The TPU embedding Trainer: TFX component, training entry point, tasks, models.

Public API:
  TpuEmbeddingTrainer: the TFX component (``component``).
  TrainingConfig, TaskConfig: how to train and what for (``config``, ``tasks``).
  run_training, TrainingResult: the entry point the executor wraps
    (``training``), for notebooks and custom orchestrators.
  EmbeddingMlp, masked_mean: a ready-made dense tower (``models``).
See ``components/trainer/README.md``.
"""

from components.trainer.component import TpuEmbeddingTrainer
from components.trainer.config import TrainingConfig
from components.trainer.models import EmbeddingMlp
from components.trainer.models import masked_mean
from components.trainer.tasks import TaskConfig
from components.trainer.training import run_training
from components.trainer.training import TrainingResult

__all__ = ['EmbeddingMlp', 'masked_mean', 'run_training', 'TaskConfig',
           'TpuEmbeddingTrainer', 'TrainingConfig', 'TrainingResult']
