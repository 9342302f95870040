"""Executor of TpuEmbeddingTrainer: TFX artifacts in, ``run_training``, properties out.

Reads the splits named by ``train_args`` / ``eval_args`` (TFX's defaults:
'train' and 'eval'), the Transform output and the embedding statistics, then
calls ``training.run_training`` in a working folder named by the inputs and
properties (``resume``), so that a rerun after a crash resumes. On success the
folder moves into the ModelRun artifact (checkpoints, logs,
``training_result.json``); both output artifacts carry the task's evaluation
metrics as ``eval_<name>`` properties. A failure raises: the execution fails.
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
from components.trainer import resume
from components.trainer import training
from components.trainer import verify
from components.trainer import warm_start_state

EXAMPLES_KEY = 'examples'
TRANSFORM_GRAPH_KEY = 'transform_graph'
STATISTICS_KEY = 'embedding_statistics'
RAW_EXAMPLES_KEY = 'raw_examples'
BASE_MODEL_KEY = standard_component_specs.BASE_MODEL_KEY
MODEL_KEY = 'model'
MODEL_RUN_KEY = 'model_run'
EMBEDDING_SPEC_KEY = 'embedding_spec'
TRAINING_CONFIG_KEY = 'training_config'
TRAIN_ARGS_KEY = 'train_args'
EVAL_ARGS_KEY = 'eval_args'
TPU_TYPE_KEY = 'tpu_type'
RESUME_ROOT_KEY = 'resume_root'
DEFAULT_TRAIN_SPLIT = 'train'
DEFAULT_EVAL_SPLIT = 'eval'
# Raw evaluation examples the reloaded serving model is checked on.
SERVING_CHECK_EXAMPLES = 64


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


def _files_by_split(examples: List[types.Artifact],
                    splits: List[str]) -> Dict[str, List[str]]:
  return {split: inputs.split_files(examples, [split]) for split in splits}


def _working_dir(input_dict: Dict[str, List[types.Artifact]],
                 exec_properties: Dict[str, Any],
                 config: config_lib.TrainingConfig,
                 train_files: Dict[str, List[str]], model_run_uri: str) -> str:
  """The run's resumable folder (``resume``), named by what decides the
  trained model: the inputs, and the properties with the config reduced to
  ``TrainingConfig.run_identity`` and without the folder's own root."""
  form = inputs.training_input(
      [path for paths in train_files.values() for path in paths],
      config.in_memory_train_mib, config.parse_once)
  properties = {**exec_properties,
                TRAINING_CONFIG_KEY: config.run_identity(form),
                RESUME_ROOT_KEY: None}
  return resume.working_dir(
      model_run_uri,
      resume.fingerprint(resume.input_uris(input_dict), properties),
      exec_properties.get(RESUME_ROOT_KEY))


def _raw_eval_examples(raw_examples: List[types.Artifact],
                       splits: List[str]) -> List[bytes]:
  """The first raw examples of the evaluation splits (none without input)."""
  if not raw_examples:
    return []
  return verify.read_records(inputs.split_files(raw_examples, list(splits)),
                             SERVING_CHECK_EXAMPLES)


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
    model_run_uri = artifact_utils.get_single_uri(output_dict[MODEL_RUN_KEY])
    train_files = _files_by_split(examples, train_args.splits)
    work_dir = _working_dir(input_dict, exec_properties, config, train_files,
                            model_run_uri)
    logging.info('Training state in %s (a rerun with the same inputs and '
                 'config resumes from it).', work_dir)
    result = training.run_training(
        config,
        exec_properties[EMBEDDING_SPEC_KEY],
        tft.TFTransformOutput(
            artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY])),
        train_files=train_files,
        eval_files=_files_by_split(examples, eval_args.splits),
        run_dir=work_dir,
        serving_dir=path_utils.serving_model_path(model_uri),
        statistics=_load_statistics(input_dict.get(STATISTICS_KEY, [])),
        tpu_type=exec_properties.get(TPU_TYPE_KEY) or '',
        raw_eval_examples=_raw_eval_examples(
            input_dict.get(RAW_EXAMPLES_KEY, []), eval_args.splits),
        base_model=base_models[0].uri if base_models else None,
        warm_start_dir=os.path.join(model_uri, warm_start_state.STATE_DIR))
    resume.finish(work_dir, model_run_uri)
    for artifact in output_dict[MODEL_RUN_KEY] + output_dict[MODEL_KEY]:
      for name, value in result.eval_metrics.items():
        artifact.set_float_custom_property(f'eval_{name}', value)
      artifact.set_string_custom_property('task', result.task)
      if result.warm_start:
        artifact.set_string_custom_property('warm_started_from',
                                            result.warm_start['base_model'])
