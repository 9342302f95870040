"""Executor of TpuEmbeddingTrainer: TFX artifacts in, ``run_training``, properties out.

Reads the splits named by ``train_args`` / ``eval_args`` (TFX's defaults:
'train' and 'eval'), the Transform output and the statistics' recommended
sequence lengths, then calls ``training.run_training``. The ModelRun artifact
keeps the checkpoints, logs and ``training_result.json``; both output
artifacts carry the task's evaluation metrics as ``eval_<name>`` properties.
With a ``base_model`` (TFX's key, fed by a Resolver) a fresh run warm-starts
from it; the Model artifact keeps ``warm_start/`` for the next run.
"""

import os
from typing import Any, Dict, List, Tuple

import tensorflow_transform as tft
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components.trainer import config as config_lib
from components.trainer import inputs
from components.trainer import training
from components.trainer import warm_start_state

EXAMPLES_KEY = 'examples'
TRANSFORM_GRAPH_KEY = 'transform_graph'
STATISTICS_KEY = 'embedding_statistics'
BASE_MODEL_KEY = standard_component_specs.BASE_MODEL_KEY
MODEL_KEY = 'model'
MODEL_RUN_KEY = 'model_run'
EMBEDDING_SPEC_KEY = 'embedding_spec'
TRAINING_CONFIG_KEY = 'training_config'
TRAIN_ARGS_KEY = 'train_args'
EVAL_ARGS_KEY = 'eval_args'
TPU_TYPE_KEY = 'tpu_type'
DEFAULT_TRAIN_SPLIT = 'train'
DEFAULT_EVAL_SPLIT = 'eval'


def read_args(exec_properties: Dict[str, Any]
             ) -> Tuple[trainer_pb2.TrainArgs, trainer_pb2.EvalArgs]:
  """``train_args`` / ``eval_args`` with TFX's default splits filled in."""
  train_args, eval_args = trainer_pb2.TrainArgs(), trainer_pb2.EvalArgs()
  if exec_properties.get(TRAIN_ARGS_KEY):
    proto_utils.json_to_proto(exec_properties[TRAIN_ARGS_KEY], train_args)
  if exec_properties.get(EVAL_ARGS_KEY):
    proto_utils.json_to_proto(exec_properties[EVAL_ARGS_KEY], eval_args)
  if not train_args.splits:
    train_args.splits.append(DEFAULT_TRAIN_SPLIT)
  if not eval_args.splits:
    eval_args.splits.append(DEFAULT_EVAL_SPLIT)
  return train_args, eval_args


def _load_statistics(artifacts: List[types.Artifact]) -> Any:
  if not artifacts:
    return None
  from components.embedding_stats import statistics as stats_lib  # pylint: disable=g-import-not-at-top
  return stats_lib.load_embedding_statistics(artifacts[0].uri)


class Executor(base_executor.BaseExecutor):
  """Trains with TPU embedding columns on a TPU or, identically, the CPU/GPU."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    train_args, eval_args = read_args(exec_properties)
    config = config_lib.TrainingConfig.from_json(
        exec_properties[TRAINING_CONFIG_KEY]).with_steps(
            train_args.num_steps, eval_args.num_steps)
    examples = input_dict[EXAMPLES_KEY]
    base_models = input_dict.get(BASE_MODEL_KEY) or []
    model_uri = artifact_utils.get_single_uri(output_dict[MODEL_KEY])
    if base_models:
      logging.info('Warm start from base model %s.', base_models[0].uri)
    logging.info('Training on splits %s, evaluating on %s.',
                 list(train_args.splits), list(eval_args.splits))
    result = training.run_training(
        config,
        exec_properties[EMBEDDING_SPEC_KEY],
        tft.TFTransformOutput(
            artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY])),
        train_files=inputs.split_files(examples, list(train_args.splits)),
        eval_files=inputs.split_files(examples, list(eval_args.splits)),
        run_dir=artifact_utils.get_single_uri(output_dict[MODEL_RUN_KEY]),
        serving_dir=path_utils.serving_model_path(model_uri),
        statistics=_load_statistics(input_dict.get(STATISTICS_KEY, [])),
        tpu_type=exec_properties.get(TPU_TYPE_KEY) or '',
        base_model=base_models[0].uri if base_models else None,
        warm_start_dir=os.path.join(model_uri, warm_start_state.STATE_DIR))
    for artifact in output_dict[MODEL_RUN_KEY] + output_dict[MODEL_KEY]:
      for name, value in result.eval_metrics.items():
        artifact.set_float_custom_property(f'eval_{name}', value)
      artifact.set_string_custom_property('task', result.task)
      if result.warm_start:
        artifact.set_string_custom_property('warm_started_from',
                                            result.warm_start['base_model'])
