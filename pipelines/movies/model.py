"""The movies model's dense tower, named by dotted path in the Trainer config.

``build_model(resolved_spec, dense_feature_keys)`` returns a tf_keras model
that maps ``{'embeddings': {feature: activations}, 'features': {key: values}}``
to the logit of "fresh". Sequence activations ([batch, length, dim], zero
padded) are pooled with a mean over their non-padding positions.
"""

from typing import Any, Dict, List

import tensorflow as tf
import tf_keras


def masked_mean(sequence: tf.Tensor) -> tf.Tensor:
  """Mean over the positions whose embedding is not all zeros (padding)."""
  mask = tf.cast(tf.reduce_any(tf.not_equal(sequence, 0.0), axis=-1),
                 sequence.dtype)
  total = tf.reduce_sum(sequence * mask[..., tf.newaxis], axis=1)
  count = tf.reduce_sum(mask, axis=1, keepdims=True)
  return tf.math.divide_no_nan(total, count)


class CheckpointedDropout(tf_keras.layers.Layer):
  """Dropout whose randomness is a function of a checkpointed call counter.

  Keras' dropout draws from random state that checkpoints do not hold, so a
  resumed run would draw other masks than an uninterrupted one. Stateless
  dropout seeded by (seed, calls so far) makes resumption exact.
  """

  def __init__(self, rate: float, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate
    self.seed = seed
    self.calls = tf.Variable(0, dtype=tf.int64, trainable=False, name='calls')

  def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
    if not training or self.rate == 0:
      return inputs
    calls = self.calls.assign_add(1)
    seed = tf.stack([tf.constant(self.seed, tf.int64), calls])
    return tf.nn.experimental.stateless_dropout(inputs, self.rate, seed=seed)


class MoviesRanker(tf_keras.Model):
  """Concatenates pooled embeddings and numeric features; a two-layer MLP."""

  def __init__(self, sequence_keys: List[str], dense_keys: List[str],
               hidden_units=(128, 64), dropout: float = 0.2, seed: int = 0):
    super().__init__(name='movies_ranker')
    self._sequence_keys = set(sequence_keys)
    self._dense_keys = list(dense_keys)
    self._hidden = [tf_keras.layers.Dense(u, activation='relu')
                    for u in hidden_units]
    self._dropout = CheckpointedDropout(dropout, seed=seed)
    self._logit = tf_keras.layers.Dense(1)

  def call(self, inputs: Dict[str, Any], training: bool = False) -> tf.Tensor:
    embeddings = inputs['embeddings']
    parts = [
        masked_mean(embeddings[key]) if key in self._sequence_keys
        else embeddings[key] for key in sorted(embeddings)
    ]
    parts += [tf.reshape(inputs['features'][key], [-1, 1])
              for key in self._dense_keys]
    x = tf.concat(parts, axis=1)
    for layer in self._hidden:
      x = self._dropout(layer(x), training=training)
    return self._logit(x)


def build_model(resolved_spec: Any, dense_feature_keys: List[str]):
  """The Trainer's ``model_fn``."""
  sequence_keys = [key for key, feature in resolved_spec.features.items()
                   if feature.is_sequence]
  return MoviesRanker(sequence_keys, dense_feature_keys)
