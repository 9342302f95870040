"""``create_pipeline``: the movies pipeline, shared by every runner.

Runners (local, Kubeflow Pipelines v2 / Vertex AI) only choose where things
run and where they are written; the components and their wiring live here.
User code is named by dotted path so that nothing local leaks into a compiled
pipeline.
"""

from typing import Any, Dict, List, Optional

from tfx import v1 as tfx

from components.embedding_stats import component as stats_component
from components.embedding_stats import from_spec
from components.movies_example_gen import MoviesExampleGen
from components.movies_example_gen import movies_db
from components.trainer import component as trainer_component
from components.trainer import config as trainer_config
from pipelines.movies import embedding_spec
from pipelines.movies import features

PREPROCESSING_FN = 'pipelines.movies.preprocessing.preprocessing_fn'
MODEL_FN = 'pipelines.movies.model.build_model'


def default_training_config(**overrides: Any) -> trainer_config.TrainingConfig:
  """The demo's training settings; ``overrides`` replace any field."""
  values = dict(model_fn=MODEL_FN, label_key=features.TRANSFORMED_LABEL,
                raw_label_key=features.LABEL,
                train_steps=embedding_spec.TRAIN_STEPS, batch_size=128,
                checkpoint_every=250, log_every=100)
  values.update(overrides)
  return trainer_config.TrainingConfig(**values)


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
    tpu_type: TPU generation ('v5e', ...) whose HBM bounds the memory plan.
    trainer_class: the Trainer component; the Vertex AI runner passes one
      that runs as a Vertex custom job.
  """
  training_config = training_config or default_training_config()
  query = movies_db.DEFAULT_QUERY
  if sample_rows:
    query = movies_db.sample_query(sample_rows)
  example_gen = MoviesExampleGen(query=query, database_uri=database_uri)
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'],
      infer_feature_shape=False)
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config=transform_config or {},
      # Raw statistics come from StatisticsGen and the embedded features' from
      # EmbeddingStatsGen; Transform's own statistics would double its time.
      disable_statistics=True)
  spec = embedding_spec.create_embedding_spec(training_config.train_steps)
  embedding_stats = stats_component.EmbeddingStatsGen(
      transformed_examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      features=from_spec.features_from_embedding_spec(spec))
  trainer = trainer_class(
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      embedding_statistics=embedding_stats.outputs['statistics'],
      # The spec itself (as JSON), so that editing it invalidates the cache.
      embedding_spec=spec,
      training_config=training_config,
      tpu_type=tpu_type)
  components = [example_gen, statistics_gen, schema_gen, transform,
                embedding_stats, trainer]
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args or [])
