"""The movies pipeline's ``preprocessing_fn`` for TensorFlow Transform.

Every categorical and list feature gets a named vocabulary (directors and
writers share one, so they can share an embedding table) and becomes int64 ids,
ragged for lists; numeric features are z-scored with a missing-value indicator;
the label passes through. Vocabulary and feature names come from ``features``.
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft

from pipelines.movies import features

# Tokens seen fewer times than this in the training split share the OOV buckets.
DEFAULT_FREQUENCY_THRESHOLD = 2
# Out-of-vocabulary buckets per vocabulary; at least one, so no id is negative.
DEFAULT_NUM_OOV_BUCKETS = 1

FREQUENCY_THRESHOLD_KEY = 'frequency_threshold'
NUM_OOV_BUCKETS_KEY = 'num_oov_buckets'


def _options(custom_config: Optional[Mapping[str, Any]]) -> Dict[str, int]:
  """Reads and validates the vocabulary options from Transform's custom_config."""
  config = dict(custom_config or {})
  options = {
      FREQUENCY_THRESHOLD_KEY: int(
          config.get(FREQUENCY_THRESHOLD_KEY, DEFAULT_FREQUENCY_THRESHOLD)),
      NUM_OOV_BUCKETS_KEY: int(
          config.get(NUM_OOV_BUCKETS_KEY, DEFAULT_NUM_OOV_BUCKETS)),
  }
  if options[NUM_OOV_BUCKETS_KEY] < 1:
    raise ValueError(
        f'{NUM_OOV_BUCKETS_KEY} must be >= 1 so that unseen tokens get a '
        f'non-negative id, got {options[NUM_OOV_BUCKETS_KEY]}.')
  if options[FREQUENCY_THRESHOLD_KEY] < 1:
    raise ValueError(f'{FREQUENCY_THRESHOLD_KEY} must be >= 1, got '
                     f'{options[FREQUENCY_THRESHOLD_KEY]}.')
  return options


def _as_ragged(tensor: Any) -> tf.RaggedTensor:
  """A [batch, None] string RaggedTensor from what tf.Example parsing yields."""
  if isinstance(tensor, tf.RaggedTensor):
    return tensor
  if isinstance(tensor, tf.SparseTensor):
    return tf.RaggedTensor.from_sparse(tensor)
  return tf.RaggedTensor.from_tensor(tf.reshape(tensor, [-1, 1]))


def _dense_scalar(tensor: Any, default_value: Any) -> tf.Tensor:
  """A [batch] tensor from a possibly sparse [batch, 1] input.

  ``sparse_tensor_to_dense_with_shape`` keeps the batch dimension even when
  every row of a batch is empty, which ``tf.sparse.to_dense`` does not.
  """
  if isinstance(tensor, tf.SparseTensor):
    tensor = tft.sparse_tensor_to_dense_with_shape(tensor, [None, 1],
                                                   default_value)
  return tf.reshape(tensor, [-1])


def _categorical_ids(inputs: Mapping[str, Any],
                     options: Mapping[str, int]) -> Dict[str, tf.RaggedTensor]:
  """Ragged int64 ids of every categorical feature, one vocabulary per name."""
  tokens = {name: _as_ragged(inputs[name])
            for name in features.CATEGORICAL_FEATURES}
  members: Dict[str, list] = {}
  for name in features.CATEGORICAL_FEATURES:
    members.setdefault(features.vocabulary_name(name), []).append(name)
  outputs = {}
  for vocabulary, names in members.items():
    all_tokens = tf.concat([tokens[n].flat_values for n in names], axis=0)
    vocabulary_file = tft.vocabulary(
        all_tokens,
        frequency_threshold=options[FREQUENCY_THRESHOLD_KEY],
        vocab_filename=vocabulary)
    for name in names:
      outputs[features.transformed_name(name)] = tft.apply_vocabulary(
          tokens[name],
          vocabulary_file,
          num_oov_buckets=options[NUM_OOV_BUCKETS_KEY])
  return outputs


def _numeric(inputs: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
  """Z-scored numeric features (0 when missing) and their missing indicators."""
  outputs = {}
  for name in features.NUMERIC_FEATURES:
    values = tf.cast(_as_ragged(inputs[name]), tf.float32)
    present = tf.cast(values.row_lengths() > 0, tf.float32)
    scaled = tft.scale_to_z_score(values.to_sparse())
    # Missing values sit at the mean: 0 after z-scoring.
    outputs[features.transformed_name(name)] = _dense_scalar(scaled, 0.0)
    outputs[features.missing_indicator_name(name)] = 1.0 - present
  return outputs


def preprocessing_fn(inputs: Mapping[str, Any],
                     custom_config: Optional[Mapping[str, Any]] = None
                    ) -> Dict[str, Any]:
  """TFX Transform entry point (named by dotted path in the pipeline).

  Args:
    inputs: raw features parsed from the tf.Examples of MoviesExampleGen.
    custom_config: optional ``frequency_threshold`` and ``num_oov_buckets``.

  Returns:
    Transformed features keyed by ``features.transformed_name``.
  """
  options = _options(custom_config)
  outputs = _categorical_ids(inputs, options)
  outputs.update(_numeric(inputs))
  outputs[features.TRANSFORMED_LABEL] = tf.cast(
      _dense_scalar(inputs[features.LABEL], 0), tf.int64)
  return outputs
