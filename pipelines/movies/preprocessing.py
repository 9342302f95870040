"""The movies pipeline's ``preprocessing_fn`` for TensorFlow Transform.

Every categorical and list feature gets a named vocabulary (directors and
writers share one, so they can share an embedding table) and becomes int64 ids,
ragged for lists; numeric features are z-scored with a missing-value indicator
(NaN and infinities count as missing, in training as in serving); the label
passes through. Names come from the feature table (``features``).
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft

from components.embedding import transform_ids
from pipelines.movies import features

# Tokens seen fewer times than this in the training split share the OOV
# buckets; one OOV bucket per vocabulary. Transform's custom_config overrides
# them (keys in ``transform_ids``).
DEFAULT_FREQUENCY_THRESHOLD = 2
DEFAULT_NUM_OOV_BUCKETS = 1


def finite_values(values: tf.RaggedTensor) -> tf.RaggedTensor:
  """``values`` without NaN and infinities: those are missing values.

  The z-score analyzers must not see them (one NaN makes the mean NaN and
  every scaled value with it), and a serving request holding one must get
  the missing indicator, not a NaN input.
  """
  return tf.ragged.boolean_mask(values, tf.math.is_finite(values))


def _numeric(inputs: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
  """Z-scored numeric features (0 when missing) and their missing indicators."""
  outputs = {}
  for name in features.NUMERIC_FEATURES:
    values = finite_values(
        tf.cast(transform_ids.as_ragged(inputs[name]), tf.float32))
    present = tf.cast(values.row_lengths() > 0, tf.float32)
    scaled = tft.scale_to_z_score(values.to_sparse())
    # Missing values sit at the mean: 0 after z-scoring.
    outputs[features.transformed_name(name)] = transform_ids.dense_scalar(
        scaled, 0.0)
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
  options = transform_ids.VocabularyOptions.from_custom_config(
      custom_config, frequency_threshold=DEFAULT_FREQUENCY_THRESHOLD,
      num_oov_buckets=DEFAULT_NUM_OOV_BUCKETS)
  outputs = transform_ids.vocabulary_ids(
      inputs, features.TABLE.vocabulary_members(),
      features.TABLE.transformed_names(), options)
  outputs.update(_numeric(inputs))
  outputs[features.TRANSFORMED_LABEL] = tf.cast(
      transform_ids.dense_scalar(inputs[features.LABEL], 0), tf.int64)
  return outputs
