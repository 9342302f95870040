"""Helpers for a ``preprocessing_fn`` that feeds TPU embedding columns.

What every example's preprocessing does to categorical features: parse them
as ragged string lists, build one named Transform vocabulary per vocabulary
name over all the features that share it (so they can share an embedding
table), and map tokens to ragged int64 ids with at least one OOV bucket, so
that no id is negative. The embedding spec names the same vocabularies
(``categorical_column_with_transform_vocabulary``), and the table sizes and
OOV buckets are read back from the Transform output.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tensorflow_transform as tft


FREQUENCY_THRESHOLD_KEY = 'frequency_threshold'
NUM_OOV_BUCKETS_KEY = 'num_oov_buckets'


@dataclasses.dataclass(frozen=True)
class VocabularyOptions:
  """How vocabularies are cut: read from Transform's ``custom_config``.

  Attributes:
    frequency_threshold: tokens seen fewer times in the analyzed splits
      share the OOV buckets (>= 1).
    num_oov_buckets: OOV buckets per vocabulary (>= 1, so no id is negative).
  """

  frequency_threshold: int = 2
  num_oov_buckets: int = 1

  def __post_init__(self):
    for name, value in dataclasses.asdict(self).items():
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be an int >= 1 (num_oov_buckets >= 1 '
                         f'gives unseen tokens a non-negative id), got '
                         f'{value!r}.')

  @classmethod
  def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]],
                         **defaults: int) -> 'VocabularyOptions':
    """Options from ``custom_config``, else ``defaults``, else the class's."""
    config = dict(custom_config or {})
    values = {**defaults, **{k: config[k] for k in
                             (FREQUENCY_THRESHOLD_KEY, NUM_OOV_BUCKETS_KEY)
                             if k in config}}
    return cls(**values)


def as_ragged(tensor: Any) -> tf.RaggedTensor:
  """A [batch, None] RaggedTensor from what tf.Example parsing yields."""
  if isinstance(tensor, tf.RaggedTensor):
    return tensor
  if isinstance(tensor, tf.SparseTensor):
    return tf.RaggedTensor.from_sparse(tensor)
  return tf.RaggedTensor.from_tensor(tf.reshape(tensor, [-1, 1]))


def dense_scalar(tensor: Any, default_value: Any) -> tf.Tensor:
  """A [batch] tensor from a possibly sparse [batch, 1] input.

  ``sparse_tensor_to_dense_with_shape`` keeps the batch dimension even when
  every row of a batch is empty, which ``tf.sparse.to_dense`` does not.
  """
  if isinstance(tensor, tf.SparseTensor):
    tensor = tft.sparse_tensor_to_dense_with_shape(tensor, [None, 1],
                                                   default_value)
  return tf.reshape(tensor, [-1])


def vocabulary_ids(inputs: Mapping[str, Any],
                   vocabulary_members: Mapping[str, Sequence[str]],
                   output_names: Mapping[str, str],
                   options: VocabularyOptions = VocabularyOptions()
                  ) -> Dict[str, tf.RaggedTensor]:
  """Ragged int64 ids of categorical features, one vocabulary per name.

  Args:
    inputs: raw features (string lists or scalars) by name.
    vocabulary_members: vocabulary name -> the features whose tokens it
      holds; members share the vocabulary (and can share a table).
    output_names: feature -> its key in the transformed examples.
    options: frequency threshold and OOV buckets.
  """
  outputs = {}
  for vocabulary, names in vocabulary_members.items():
    tokens = {name: as_ragged(inputs[name]) for name in names}
    vocabulary_file = tft.vocabulary(
        tf.concat([tokens[n].flat_values for n in names], axis=0),
        frequency_threshold=options.frequency_threshold,
        vocab_filename=vocabulary)
    for name in names:
      outputs[output_names[name]] = tft.apply_vocabulary(
          tokens[name], vocabulary_file,
          num_oov_buckets=options.num_oov_buckets)
  return outputs
