"""The movies example's ``create_pipeline``, shared by its runners.

The movies ExampleGen, ``preprocessing_fn``, embedding spec and model, put
together by the generic builder (``pipelines.builder``). Runners (local,
Kubeflow Pipelines v2 / Vertex AI) only choose where things run.
"""

import argparse
from typing import Any, Dict, List, Optional

from tfx import v1 as tfx

from components.trainer import component as trainer_component
from components.trainer import config as trainer_config
from pipelines import builder
from pipelines import run_options
from pipelines.movies import embedding_spec
from pipelines.movies import features
from pipelines.movies.example_gen import MoviesExampleGen
from pipelines.movies.example_gen import movies_db

PIPELINE_NAME = 'movies'
PREPROCESSING_FN = 'pipelines.movies.preprocessing.preprocessing_fn'
MODEL_FN = 'pipelines.movies.model.build_model'
# Optimizer steps of the demo (about 7 epochs at batch 128); the cast's table
# warms up and decays over them.
TRAIN_STEPS = 800


def default_training_config(**overrides: Any) -> trainer_config.TrainingConfig:
  """The demo's training settings; ``overrides`` replace any field."""
  values = dict(model_fn=MODEL_FN, label_key=features.TRANSFORMED_LABEL,
                raw_label_key=features.LABEL, train_steps=TRAIN_STEPS,
                batch_size=128, checkpoint_every=250, log_every=100)
  values.update(overrides)
  return trainer_config.TrainingConfig(**values)


def add_data_options(parser: argparse.ArgumentParser) -> None:
  """The movies runners' own option: --sample-rows."""
  parser.add_argument('--sample-rows', type=run_options.positive_int,
                      default=None,
                      help='read only the first N films (quick runs)')


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    metadata_connection_config: Optional[Any] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    database_uri: Optional[str] = None,
    sample_rows: Optional[int] = None,
    transform_config: Optional[Dict[str, Any]] = None,
    enable_cache: bool = True,
    training_config: Optional[trainer_config.TrainingConfig] = None,
    tpu_type: Optional[str] = None,
    trainer_class: Any = trainer_component.TpuEmbeddingTrainer,
    until_year: Optional[int] = None,
    warm_start: bool = False,
) -> tfx.dsl.Pipeline:
  """Builds the movies pipeline.

  Args:
    pipeline_name: name recorded in the metadata store.
    pipeline_root: where the artifacts are written (local path or gs://).
    metadata_connection_config: the metadata store; None lets the runner pick
      (Vertex AI provides its own).
    beam_pipeline_args: options of the Beam components (DirectRunner locally,
      DataflowRunner on Vertex AI).
    database_uri: the movies SQLite file; None reads the bundled one.
    sample_rows: read only this many films (tests and quick runs).
    transform_config: ``custom_config`` of Transform (vocabulary options, see
      ``pipelines.movies.preprocessing``).
    enable_cache: reuse the outputs of unchanged components on a rerun.
    training_config: the Trainer's settings (``default_training_config()``).
    tpu_type: TPU generation ('v5p', ...) whose HBM bounds the memory plan.
    trainer_class: the Trainer component; the Vertex AI runner passes one
      that runs as a Vertex custom job.
    until_year: read only the films released up to this year.
    warm_start: the Trainer starts from this pipeline's latest Model
      (``builder.create_pipeline``'s ``warm_start``).
  """
  training_config = training_config or default_training_config()
  query = movies_db.DEFAULT_QUERY
  if until_year is not None:
    query = movies_db.until_year_query(until_year)
  if sample_rows is not None:
    query = movies_db.sample_query(sample_rows, query)
  return builder.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      examples=MoviesExampleGen(query=query, database_uri=database_uri),
      preprocessing_fn=PREPROCESSING_FN,
      transform_config=transform_config,
      embedding_spec=embedding_spec.create_embedding_spec(
          training_config.train_steps),
      training_config=training_config,
      tpu_type=tpu_type,
      trainer_class=trainer_class,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args,
      enable_cache=enable_cache,
      warm_start=warm_start)
