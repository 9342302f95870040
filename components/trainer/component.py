"""TpuEmbeddingTrainer: the TFX component that trains with TPU embedding columns."""

from typing import Any, Dict, Optional, Union

from tfx import types
from tfx.proto import trainer_pb2
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from components.embedding_stats import artifact as stats_artifact
from components.trainer import config as config_lib
from components.trainer import executor
from components.trainer import tasks
from components.trainer import training


class TpuEmbeddingTrainerSpec(types.ComponentSpec):
  """Inputs: Transform's outputs, the embedding statistics, a base model."""

  PARAMETERS = {
      executor.EMBEDDING_SPEC_KEY: component_spec.ExecutionParameter(type=str),
      executor.TRAINING_CONFIG_KEY: component_spec.ExecutionParameter(type=str),
      executor.TRAIN_ARGS_KEY: component_spec.ExecutionParameter(
          type=trainer_pb2.TrainArgs, optional=True),
      executor.EVAL_ARGS_KEY: component_spec.ExecutionParameter(
          type=trainer_pb2.EvalArgs, optional=True),
      executor.TPU_TYPE_KEY: component_spec.ExecutionParameter(
          type=str, optional=True),
      executor.RESUME_ROOT_KEY: component_spec.ExecutionParameter(
          type=str, optional=True),
      # Read by the executor that launches the training, not by the training:
      # the Vertex AI variant keeps its custom job's settings here.
      standard_component_specs.CUSTOM_CONFIG_KEY:
          component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      executor.EXAMPLES_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.Examples),
      executor.TRANSFORM_GRAPH_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.TransformGraph),
      executor.STATISTICS_KEY: component_spec.ChannelParameter(
          type=stats_artifact.EmbeddingStatistics, optional=True),
      # The raw examples Transform read: the exported serving model is
      # checked on raw evaluation examples before the run succeeds.
      executor.RAW_EXAMPLES_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.Examples, optional=True),
      executor.BASE_MODEL_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.Model, optional=True),
  }
  OUTPUTS = {
      executor.MODEL_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.Model),
      executor.MODEL_RUN_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ModelRun),
  }


class TpuEmbeddingTrainer(base_component.BaseComponent):
  """Trains a model whose embeddings are TPU embedding columns.

  The embedding spec (``components.embedding.EmbeddingSpec``) is given as the
  spec itself, its JSON, or the dotted path of a function returning it. It is
  resolved against the Transform output (table sizes, OOV buckets) and the
  embedding statistics (``max_sequence_length='auto'``) and validated before
  training starts. ``training_config.tpu`` None trains on the CPU/GPU with
  the TPU's semantics. ``train_args`` / ``eval_args`` (``tfx.proto``) name the
  splits (default 'train' and 'eval') and may set the steps, which then
  replace ``training_config``'s ``train_steps`` / ``eval_steps``.
  ``custom_config`` (a dict or its JSON) is for the executor that launches
  training elsewhere, such as a Vertex AI custom job
  (``components.trainer.vertex``). ``base_model`` (a Model channel, e.g. a
  ``Resolver``'s latest model) warm-starts a fresh run: tables remapped by
  token to this run's vocabularies, the dense model when it matches
  (``components.trainer.warm_start``); an empty channel trains cold.
  ``resume_root`` is where a crashed run's state waits for the rerun
  (``components.trainer.resume``); it must outlive a pipeline run, as
  ``create_pipeline``'s ``<pipeline_root>/<Trainer>/resume`` does. None keeps
  it beside the ModelRun folders, which only a local orchestrator reuses.
  """

  SPEC_CLASS = TpuEmbeddingTrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self,
               examples: types.BaseChannel,
               transform_graph: types.BaseChannel,
               embedding_spec: Union[str, Any],
               training_config: Union[config_lib.TrainingConfig, Dict[str, Any]],
               train_args: Optional[trainer_pb2.TrainArgs] = None,
               eval_args: Optional[trainer_pb2.EvalArgs] = None,
               embedding_statistics: Optional[types.BaseChannel] = None,
               raw_examples: Optional[types.BaseChannel] = None,
               tpu_type: Optional[str] = None,
               custom_config: Optional[Union[str, Dict[str, Any]]] = None,
               base_model: Optional[types.BaseChannel] = None,
               resume_root: Optional[str] = None):
    if isinstance(training_config, dict):
      training_config = config_lib.TrainingConfig.from_dict(training_config)
    if not isinstance(embedding_spec, str):
      embedding_spec = embedding_spec.to_json()
    # Fail at definition time, before any pipeline runs.
    training.load_embedding_spec(embedding_spec,
                                 training_config.allowed_spec_prefixes())
    tasks.import_by_path(training_config.model_fn)
    tasks.Task(training_config.task)
    spec = TpuEmbeddingTrainerSpec(
        examples=examples,
        transform_graph=transform_graph,
        train_args=train_args or trainer_pb2.TrainArgs(),
        eval_args=eval_args or trainer_pb2.EvalArgs(),
        embedding_statistics=embedding_statistics,
        raw_examples=raw_examples,
        base_model=base_model,
        embedding_spec=embedding_spec,
        training_config=training_config.to_json(),
        tpu_type=tpu_type,
        resume_root=resume_root,
        custom_config=(json_utils.dumps(custom_config)
                       if isinstance(custom_config, dict) else custom_config),
        model=types.Channel(type=standard_artifacts.Model),
        model_run=types.Channel(type=standard_artifacts.ModelRun))
    super().__init__(spec=spec)
