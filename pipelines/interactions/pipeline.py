"""The interactions example's ``create_pipeline``: TFRecords in, ratings out.

TFX's ImportExampleGen reads the log's ``train/`` and ``eval/`` folders as
splits; the generic builder adds statistics, Transform, EmbeddingStatsGen
and the Trainer with a multiclass task over the five ratings.
"""

from typing import Any, Dict, List, Optional

from tfx import v1 as tfx

from components.trainer import config as trainer_config
from components.trainer import tasks
from pipelines import builder
from pipelines.interactions import data
from pipelines.interactions import embedding_spec
from pipelines.interactions import features

PIPELINE_NAME = 'interactions'
PREPROCESSING_FN = 'pipelines.interactions.preprocessing.preprocessing_fn'
MODEL_FN = 'pipelines.interactions.model.build_model'
TRAIN_STEPS = 600


def default_training_config(**overrides: Any) -> trainer_config.TrainingConfig:
  """Five-way classification of the rating; ``overrides`` replace fields."""
  values = dict(model_fn=MODEL_FN, label_key=features.TRANSFORMED_LABEL,
                raw_label_key=features.LABEL, train_steps=TRAIN_STEPS,
                batch_size=64, checkpoint_every=200, log_every=100,
                dense_learning_rate=3e-3,
                task=tasks.TaskConfig(kind='multiclass',
                                      num_classes=features.NUM_RATINGS,
                                      top_k=2))
  values.update(overrides)
  return trainer_config.TrainingConfig(**values)


def example_gen(data_root: str) -> Any:
  """ImportExampleGen over the log's split folders (``data.write_log``)."""
  return tfx.components.ImportExampleGen(
      input_base=data_root,
      input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name=split, pattern=f'{split}/*')
          for split in data.SPLITS]))


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    metadata_connection_config: Optional[Any] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    transform_config: Optional[Dict[str, Any]] = None,
    enable_cache: bool = True,
    training_config: Optional[trainer_config.TrainingConfig] = None,
) -> tfx.dsl.Pipeline:
  """Builds the interactions pipeline over the TFRecords under ``data_root``."""
  return builder.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      examples=example_gen(data_root),
      preprocessing_fn=PREPROCESSING_FN,
      transform_config=transform_config,
      embedding_spec=embedding_spec.create_embedding_spec(),
      training_config=training_config or default_training_config(),
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args,
      enable_cache=enable_cache)
