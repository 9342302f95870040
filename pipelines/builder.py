"""``create_pipeline``: the generic TPU-embedding pipeline every example builds on.

    examples (any ExampleGen, or an Examples channel)
      -> StatisticsGen -> SchemaGen -> Transform (the user's preprocessing_fn)
      -> EmbeddingStatsGen (features read off the embedding spec)
      -> TpuEmbeddingTrainer (spec, TrainingConfig, train_args / eval_args)
    latest Model (Resolver, with ``warm_start=True``) -> TpuEmbeddingTrainer

An example (``pipelines/movies``, ``pipelines/interactions``) supplies its
ExampleGen, ``preprocessing_fn``, embedding spec and training config; runners
(local, Kubeflow v2 / Vertex AI) only choose where things run. User code is
named by dotted path (or a module file for Transform, as TFX takes it), so
nothing local leaks into a compiled pipeline.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_node

from components.embedding_stats import component as stats_component
from components.embedding_stats import config as stats_config
from components.embedding_stats import from_spec
from components.trainer import component as trainer_component
from components.trainer import config as trainer_config
from components.trainer import resume
from components.trainer import training

# Node ids of the components the builder adds (the run summary reads them).
STATISTICS_GEN = 'StatisticsGen'
SCHEMA_GEN = 'SchemaGen'
TRANSFORM = 'Transform'
EMBEDDING_STATS_GEN = 'EmbeddingStatsGen'
TRAINER = 'TpuEmbeddingTrainer'
BASE_MODEL_RESOLVER = 'latest_model_resolver'


def latest_model_resolver() -> tfx.dsl.Resolver:
  """The pipeline's latest Model (none on a first run: the Trainer starts
  cold), as TFX's own Trainer takes its ``base_model``."""
  return tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
  ).with_id(BASE_MODEL_RESOLVER)


def resume_root(pipeline_root: str) -> str:
  """Where a crashed Trainer's state waits for the rerun: under the pipeline
  root, which every run shares (Vertex AI writes each job's artifacts in a
  folder of its own)."""
  return os.path.join(pipeline_root, TRAINER, resume.RESUME_DIR)


def _examples_channel(examples: Union[base_node.BaseNode, types.BaseChannel]
                     ) -> types.BaseChannel:
  if isinstance(examples, base_node.BaseNode):
    if 'examples' not in examples.outputs:
      raise ValueError(f'{examples.id} has no "examples" output; pass an '
                       'ExampleGen or an Examples channel.')
    return examples.outputs['examples']
  return examples


def _splits(args: Any, default: str) -> List[str]:
  return list(args.splits) if args is not None and args.splits else [default]


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    examples: Union[base_node.BaseNode, types.BaseChannel],
    embedding_spec: Any,
    training_config: trainer_config.TrainingConfig,
    preprocessing_fn: Optional[str] = None,
    module_file: Optional[str] = None,
    transform_config: Optional[Dict[str, Any]] = None,
    train_args: Optional[tfx.proto.TrainArgs] = None,
    eval_args: Optional[tfx.proto.EvalArgs] = None,
    truncation_policy: Optional[stats_config.TruncationPolicy] = None,
    split_checks: Optional[Any] = None,
    sparsecore_topology: Optional[Any] = None,
    tpu_type: Optional[str] = None,
    trainer_class: Any = trainer_component.TpuEmbeddingTrainer,
    extra_components: Sequence[base_node.BaseNode] = (),
    metadata_connection_config: Optional[Any] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
    warm_start: bool = False,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline from an example's parts.

  Args:
    pipeline_name: name recorded in the metadata store.
    pipeline_root: where the artifacts are written (local path or gs://).
    examples: an ExampleGen component (added to the pipeline) or a channel of
      Examples produced elsewhere.
    embedding_spec: an ``EmbeddingSpec``, its JSON or a dotted path; passed to
      the Trainer as JSON so that editing it invalidates the cache.
    training_config: the Trainer's ``TrainingConfig``.
    preprocessing_fn: dotted path of Transform's ``preprocessing_fn``.
    module_file: a module file defining ``preprocessing_fn`` (instead of
      ``preprocessing_fn``).
    transform_config: Transform's ``custom_config``.
    train_args: training splits and steps (default: split 'train', the
      config's steps). Transform analyzes these splits.
    eval_args: evaluation splits and steps (default: split 'eval').
    truncation_policy: how EmbeddingStatsGen chooses sequence lengths.
    split_checks: thresholds of EmbeddingStatsGen's train/eval warnings
      (``components.embedding_stats.SplitChecks`` or its dict).
    sparsecore_topology: chips, SparseCores per chip and global batch size
      for which EmbeddingStatsGen recommends SparseCore limits.
    tpu_type: TPU generation ('v5p', ...) whose memory bounds the plan.
    trainer_class: the Trainer component; the Vertex AI runner passes one
      that runs as a Vertex custom job.
    extra_components: more components (an evaluator, a pusher, ...).
    metadata_connection_config: the metadata store; None lets the runner
      pick (Vertex AI provides its own).
    beam_pipeline_args: options of the Beam components.
    enable_cache: reuse the outputs of unchanged components on a rerun.
    warm_start: feed the Trainer's ``base_model`` with the latest Model of
      this pipeline (a ``Resolver``), so each run continues from the last
      one's tables, remapped to its vocabularies.
  """
  if bool(preprocessing_fn) == bool(module_file):
    raise ValueError('Give exactly one of preprocessing_fn (a dotted path) '
                     'and module_file.')
  spec = training.load_embedding_spec(
      embedding_spec, training_config.allowed_spec_prefixes())
  examples_channel = _examples_channel(examples)
  train_splits = _splits(train_args, 'train')
  eval_splits = _splits(eval_args, 'eval')
  statistics_gen = tfx.components.StatisticsGen(examples=examples_channel)
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'],
      infer_feature_shape=False)
  transform = tfx.components.Transform(
      examples=examples_channel,
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=preprocessing_fn,
      module_file=module_file,
      custom_config=transform_config or {},
      splits_config=tfx.proto.SplitsConfig(
          analyze=train_splits,
          transform=list(dict.fromkeys(train_splits + eval_splits))),
      # Raw statistics come from StatisticsGen and the embedded features' from
      # EmbeddingStatsGen; Transform's own statistics would double its time.
      disable_statistics=True)
  embedding_stats = stats_component.EmbeddingStatsGen(
      transformed_examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      features=from_spec.features_from_embedding_spec(spec),
      policy=truncation_policy,
      checks=split_checks,
      sparsecore_topology=sparsecore_topology)
  resolver = latest_model_resolver() if warm_start else None
  trainer = trainer_class(
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      embedding_statistics=embedding_stats.outputs['statistics'],
      raw_examples=examples_channel,
      embedding_spec=spec,
      training_config=training_config,
      train_args=train_args,
      eval_args=eval_args,
      tpu_type=tpu_type,
      base_model=resolver.outputs['model'] if resolver else None,
      resume_root=resume_root(pipeline_root))
  components = [statistics_gen, schema_gen, transform, embedding_stats,
                *([resolver] if resolver else []), trainer, *extra_components]
  if isinstance(examples, base_node.BaseNode):
    components.insert(0, examples)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args or [])
