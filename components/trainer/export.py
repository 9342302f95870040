"""Exports: a serving SavedModel on raw tf.Examples, and projector files.

The serving signature takes serialized raw ``tf.Example``s, applies the
Transform graph, maps ids, looks them up in the learned tables with the CPU
lookup and returns the task's outputs (``tasks.Task.serving_outputs``:
``probabilities`` for a binary task), so it runs wherever TF Serving or
``saved_model_cli`` does. Unseen tokens fall in the OOV buckets, missing
features and empty lists become empty rows (zero embeddings); inputs that are
not serialized tf.Examples are refused with one ``InvalidArgumentError``
(``serving_input``).

The tables are restored from the training checkpoint, which both the CPU and
the TPU path write with the same layout; the optimizer slots are left out.
"""

import contextlib
import os
from typing import Any, ContextManager, Dict, List, Mapping, Optional

import tensorflow as tf
from absl import logging
from tensorboard.plugins import projector

from components.embedding import cpu_embedding
from components.trainer import autograph_rules
from components.trainer import backends
from components.trainer import serving_input
from components.trainer import warm_start_state

SERVING_SIGNATURE = 'serving_default'
PROJECTOR_DIR = 'projector'
_embedding = tf.tpu.experimental.embedding


def serving_feature_config(feature_config: Mapping[str, Any]) -> Dict[str, Any]:
  """A copy of ``feature_config`` whose tables have no optimizer (no slots)."""
  tables = {}
  result = {}
  for key, feature in feature_config.items():
    table = feature.table
    if id(table) not in tables:
      tables[id(table)] = _embedding.TableConfig(
          vocabulary_size=table.vocabulary_size, dim=table.dim,
          initializer=table.initializer, optimizer=None,
          combiner=table.combiner, name=table.name)
    result[key] = _embedding.FeatureConfig(
        table=tables[id(table)],
        max_sequence_length=feature.max_sequence_length,
        validate_weights_and_indices=feature.validate_weights_and_indices,
        name=feature.name)
  return result


class ServingModule(tf.Module):
  """Raw tf.Example bytes in, the task's outputs out."""

  def __init__(self, tft_layer: Any, id_mapper: Any, embedding: Any,
               model: Any, raw_feature_spec: Mapping[str, Any],
               dense_keys: List[str], task: Any):
    super().__init__(name='serving')
    self._task = task
    self.tft_layer = tft_layer
    self.id_mapper = id_mapper
    self.embedding = embedding
    self.model = model
    self._raw_feature_spec = dict(raw_feature_spec)
    self._dense_keys = list(dense_keys)

  @tf.function(input_signature=[
      tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')])
  def serve(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    outputs = self.model(self._model_inputs(examples), training=False)
    return self._serving_outputs(outputs)

  # Only the user's model needs AutoGraph (its ``call`` may branch on
  # tensors; tf_keras converts it when the model is called). The rest is this
  # package's, Transform's and TensorFlow's code without tensor-dependent
  # Python control flow: converting it cost seconds of every export.
  @tf.autograph.experimental.do_not_convert
  def _model_inputs(self, examples: tf.Tensor) -> Dict[str, Any]:
    """Parses, transforms, maps ids and looks them up: the model's inputs."""
    # Bytes that are no tf.Example fail here with one clear error.
    raw = tf.io.parse_example(serving_input.checked_examples(examples),
                              self._raw_feature_spec)
    transformed = self.tft_layer(raw)
    ids, weights = self.id_mapper(transformed)
    weights = {k: v for k, v in weights.items() if v is not None}
    activations = self.embedding(ids, backends.full_weights(ids, weights))
    dense = {k: tf.cast(transformed[k], tf.float32) for k in self._dense_keys}
    return backends.model_inputs(activations, dense)

  @tf.autograph.experimental.do_not_convert
  def _serving_outputs(self, outputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self._task.serving_outputs(outputs)


def _without_keras_traces() -> ContextManager[None]:
  """A scope in which saving skips tf_keras's traces of its layers' calls.

  ``tf.saved_model.save`` of an object holding tf_keras models (the dense
  model, Transform's layer) traces every layer's ``call`` again for functions
  a SavedModel loader could call on the restored layers; the serving
  signature never calls them, and the traces cost seconds of every export.
  This is tf_keras's own switch (``Model.save(save_traces=False)``) for
  ``tf.saved_model.save``; where tf_keras lacks it, the traces are saved.
  """
  try:
    from tf_keras.src.saving.legacy.saved_model import utils  # pylint: disable=g-import-not-at-top
    scope = utils.keras_option_scope
    in_scope = utils.in_tf_saved_model_scope()
  except (ImportError, AttributeError):
    logging.info('tf_keras has no save_traces switch here: saving its '
                 'traces.')
    return contextlib.nullcontext()
  return scope(save_traces=False, in_tf_saved_model_scope=in_scope)


def restore_tables(feature_config: Mapping[str, Any],
                   checkpoint_path: str) -> cpu_embedding.CpuEmbedding:
  """The learned tables (no optimizer slots) from a training checkpoint.

  Their lookups do not check the ids' range again: in the serving function
  the spec's ``IdMapper`` has checked every id (failing with an error that
  names the feature), as on the training path (``backends.CpuBackend``). A
  second check per feature only made the serving graph bigger and its
  tracing and saving slower.
  """
  embedding = cpu_embedding.CpuEmbedding(
      serving_feature_config(feature_config), optimizer=None,
      validate_ids=False)
  # Restored before it is built: the variables are created from the
  # checkpoint, and a SparseCore (V2) checkpoint's stacked tables are split
  # into one table each by their recorded layouts (``sparsecore_layouts``).
  status = tf.train.Checkpoint(embedding=embedding).restore(checkpoint_path)
  embedding.build()
  status.expect_partial()
  _check_tables_in_checkpoint(
      [table.name for table in embedding.embedding_tables], checkpoint_path)
  return embedding


def _check_tables_in_checkpoint(tables: List[str],
                                checkpoint_path: str) -> None:
  """Raises unless every table has a value in the checkpoint: its own, or
  its stack's with a recorded SparseCore layout."""
  reader = tf.train.load_checkpoint(checkpoint_path)
  stacked = warm_start_state.sparse_core_layouts(reader)
  missing = [table for table in tables if not reader.has_tensor(
      warm_start_state.checkpoint_key(
          warm_start_state.stored_table_name(table, stacked)))]
  if missing:
    raise ValueError(
        f'The checkpoint {checkpoint_path} holds no values for the tables '
        f'{missing}: it was not written by this spec\'s training (or a '
        'SparseCore checkpoint lacks its table layouts).')


def export_serving_model(export_dir: str, embedding: Any, model: Any,
                         id_mapper: Any, tf_transform_output: Any,
                         label_keys: List[str],
                         dense_keys: List[str], task: Any) -> str:
  """Writes the SavedModel; returns ``export_dir``.

  Args:
    export_dir: where the SavedModel goes.
    embedding: the tables, from ``restore_tables``.
    model: the trained dense model.
    id_mapper: the spec's ``IdMapper``.
    tf_transform_output: the Transform output (graph and raw feature spec).
    label_keys: raw features the requests do not carry.
    dense_keys: the transformed features the dense model reads.
    task: the ``tasks.Task`` whose serving outputs the signature returns.
  """
  autograph_rules.skip_tf_keras()
  raw_spec = tf_transform_output.raw_feature_spec()
  for key in label_keys:
    raw_spec.pop(key, None)
  module = ServingModule(tf_transform_output.transform_features_layer(),
                         id_mapper, embedding, model, raw_spec, dense_keys,
                         task)
  with _without_keras_traces():
    tf.saved_model.save(module, export_dir,
                        signatures={SERVING_SIGNATURE: module.serve})
  logging.info('Serving model written to %s', export_dir)
  return export_dir


def _row_labels(resolved_table: Any, vocabulary: Optional[List[str]]) -> List[str]:
  size = resolved_table.vocabulary_size
  tokens = list(vocabulary or [])[:size]
  return tokens + [f'[OOV {i}]' for i in range(size - len(tokens))]


def export_projector(log_dir: str, embedding: Any, resolved_spec: Any,
                     vocabularies: Mapping[str, List[str]]) -> str:
  """Writes the tables and their row labels for TensorBoard's projector."""
  out_dir = os.path.join(log_dir, PROJECTOR_DIR)
  tf.io.gfile.makedirs(out_dir)
  config = projector.ProjectorConfig()
  variables = {}
  for table_config, variable in embedding.embedding_tables.items():
    table = resolved_spec.tables[table_config.name]
    metadata = f'{table.name}.tsv'
    with tf.io.gfile.GFile(os.path.join(out_dir, metadata), 'w') as f:
      for label in _row_labels(table, vocabularies.get(table.name)):
        f.write(label.replace('\n', ' ').replace('\t', ' ') + '\n')
    variables[table.name] = tf.Variable(variable, name=table.name)
    entry = config.embeddings.add()
    entry.tensor_name = f'{table.name}/.ATTRIBUTES/VARIABLE_VALUE'
    entry.metadata_path = metadata
  tf.train.Checkpoint(**variables).save(os.path.join(out_dir, 'tables.ckpt'))
  projector.visualize_embeddings(out_dir, config)
  return out_dir
