"""Executor of TpuEmbeddingTrainer: wires TFX artifacts to the training loop.

Before any device time is spent it resolves the embedding spec against the
Transform output and the embedding statistics, checks the memory plan, and
validates the training config. Then it trains (resuming from the checkpoints
in the ModelRun artifact if a previous attempt crashed), exports the serving
model to the Model artifact and the projector files to the ModelRun artifact.
"""

import json
import os
from typing import Any, Dict, List, Mapping

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import embedding as emb
from components.trainer import config as config_lib
from components.trainer import export
from components.trainer import inputs
from components.trainer import loop

EXAMPLES_KEY = 'examples'
TRANSFORM_GRAPH_KEY = 'transform_graph'
SCHEMA_KEY = 'schema'
STATISTICS_KEY = 'embedding_statistics'
MODEL_KEY = 'model'
MODEL_RUN_KEY = 'model_run'
EMBEDDING_SPEC_KEY = 'embedding_spec'
TRAINING_CONFIG_KEY = 'training_config'
TPU_TYPE_KEY = 'tpu_type'
TRAINING_RESULT_FILE = 'training_result.json'


def load_embedding_spec(value: str) -> emb.EmbeddingSpec:
  """A spec from its JSON, or from the dotted path of a function returning it."""
  text = value.strip()
  if text.startswith('{'):
    return emb.EmbeddingSpec.from_json(text)
  spec = loop.import_function(text)()
  if not isinstance(spec, emb.EmbeddingSpec):
    raise ValueError(f'{text} returned {type(spec).__name__}, not an '
                     'EmbeddingSpec.')
  return spec


def _recommended_lengths(statistics: List[types.Artifact]) -> Dict[str, int]:
  if not statistics:
    return {}
  from components.embedding_stats import statistics as stats_lib  # pylint: disable=g-import-not-at-top
  return stats_lib.load_embedding_statistics(
      statistics[0].uri).recommended_max_sequence_lengths()


def _check_memory(resolved: Any, tpu_type: str, on_tpu: bool) -> None:
  plan = resolved.memory_plan()
  logging.info('Embedding memory plan:\n%s', plan)
  if on_tpu and tpu_type:
    plan.check(emb.tpu_hbm_bytes_per_device(tpu_type))
  elif not on_tpu:
    plan.check(emb.host_memory_bytes())


def _table_vocabularies(resolved: Any, transform_output: Any
                       ) -> Dict[str, List[str]]:
  """Row labels of each table that came from a Transform vocabulary."""
  result = {}
  for feature in resolved.features.values():
    name = getattr(feature.column, 'vocabulary_name', None)
    if name and feature.table_name not in result:
      result[feature.table_name] = [
          t.decode('utf-8', 'replace') if isinstance(t, bytes) else str(t)
          for t in transform_output.vocabulary_by_name(name)]
  return result


class Executor(base_executor.BaseExecutor):
  """Trains with TPU embedding columns on a TPU or, identically, the CPU/GPU."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    config = config_lib.TrainingConfig.from_json(
        exec_properties[TRAINING_CONFIG_KEY])
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    transform_output = tft.TFTransformOutput(
        artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY]))
    resolved = load_embedding_spec(exec_properties[EMBEDDING_SPEC_KEY]).resolve(
        tf_transform_output=transform_output,
        max_sequence_lengths=_recommended_lengths(
            input_dict.get(STATISTICS_KEY, [])))
    _check_memory(resolved, exec_properties.get(TPU_TYPE_KEY) or '',
                  config.on_tpu)
    model_run_uri = artifact_utils.get_single_uri(output_dict[MODEL_RUN_KEY])
    result = loop.train(
        config, resolved, transform_output.transformed_feature_spec(),
        inputs.split_files(examples.uri, 'train'),
        inputs.split_files(examples.uri, 'eval'), model_run_uri)
    self._export(config, resolved, transform_output, result, output_dict,
                 model_run_uri)

  def _export(self, config: config_lib.TrainingConfig, resolved: Any,
              transform_output: Any, result: loop.TrainResult,
              output_dict: Mapping[str, List[types.Artifact]],
              model_run_uri: str) -> None:
    model_uri = artifact_utils.get_single_uri(output_dict[MODEL_KEY])
    feature_config = resolved.compile(tf.Variable(0, dtype=tf.int64))
    model = loop.import_function(config.model_fn)(resolved,
                                                  result.dense_feature_keys)
    tf.train.Checkpoint(model=model).restore(result.checkpoint).expect_partial()
    tables = export.restore_tables(feature_config, result.checkpoint)
    serving_dir = path_utils.serving_model_path(model_uri)
    export.export_serving_model(
        serving_dir, tables, model, resolved.id_mapper(), transform_output,
        [config.raw_label_key] if config.raw_label_key else [],
        result.dense_feature_keys)
    if config.export_projector:
      export.export_projector(
          os.path.join(model_run_uri, loop.LOG_DIR), tables, resolved,
          _table_vocabularies(resolved, transform_output))
    summary = {
        'steps': result.steps,
        'resumed_from_step': result.resumed_from_step,
        'final_loss': result.final_loss,
        'examples_per_second': result.examples_per_second,
        'eval': result.eval_metrics,
        'device': result.device,
        'serving_model': serving_dir,
    }
    with tf.io.gfile.GFile(os.path.join(model_run_uri, TRAINING_RESULT_FILE),
                           'w') as f:
      json.dump(summary, f, indent=2)
    for artifact in output_dict[MODEL_RUN_KEY]:
      artifact.set_float_custom_property('eval_auc', result.eval_metrics['auc'])
