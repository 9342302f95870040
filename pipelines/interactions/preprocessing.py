"""The interactions example's ``preprocessing_fn`` for TensorFlow Transform.

Users, items (with the history, in one vocabulary) and categories become
ragged int64 ids; the 1-5 rating becomes a class id 0-4.
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from components.embedding import transform_ids
from pipelines.interactions import features


def preprocessing_fn(inputs: Mapping[str, Any],
                     custom_config: Optional[Mapping[str, Any]] = None
                    ) -> Dict[str, Any]:
  """TFX Transform entry point (named by dotted path in the pipeline).

  Args:
    inputs: raw features parsed from the interaction tf.Examples.
    custom_config: optional ``frequency_threshold`` (default 1: every user
      and item seen in training gets a row) and ``num_oov_buckets``.
  """
  options = transform_ids.VocabularyOptions.from_custom_config(
      custom_config, frequency_threshold=1)
  outputs = transform_ids.vocabulary_ids(
      inputs, features.TABLE.vocabulary_members(),
      features.TABLE.transformed_names(), options)
  rating = transform_ids.dense_scalar(inputs[features.LABEL], 0)
  outputs[features.TRANSFORMED_LABEL] = tf.cast(rating, tf.int64) - 1
  return outputs
