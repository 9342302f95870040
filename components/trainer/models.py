"""A ready-made dense tower for ``TrainingConfig.model_fn``.

The model contract: ``model_fn(resolved_spec, dense_feature_keys)`` returns a
tf_keras model called with ``{'embeddings': {feature: activations},
'features': {key: [batch] float32}}``; bag features arrive as ``[batch, dim]``,
sequence features as ``[batch, max_sequence_length, dim]`` zero padded. It
returns the task's outputs (``components.trainer.tasks``).

``EmbeddingMlp`` is that contract's simplest useful model: pooled embeddings
and dense features concatenated, then an MLP. A model_fn can return it with
its own widths, or be any other tf_keras model.
"""

from typing import Any, Dict, List, Sequence

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


class EmbeddingMlp(tf_keras.Model):
  """Pooled embeddings and dense features, concatenated; an MLP on top.

  Args:
    sequence_keys: features whose activations are sequences (mean-pooled
      over their non-padding positions).
    dense_keys: the dense features to append, in order.
    hidden_units: widths of the ReLU layers.
    outputs: width of the last (linear) layer: 1 for binary or regression
      tasks, the number of classes for a multiclass one.
    dropout: dropout rate after each hidden layer (resumable exactly).
    seed: the dropout seed.
  """

  def __init__(self, sequence_keys: Sequence[str], dense_keys: Sequence[str],
               hidden_units: Sequence[int] = (128, 64), outputs: int = 1,
               dropout: float = 0.2, seed: int = 0, name: str = 'mlp'):
    super().__init__(name=name)
    self._sequence_keys = set(sequence_keys)
    self._dense_keys = list(dense_keys)
    self._hidden = [tf_keras.layers.Dense(u, activation='relu')
                    for u in hidden_units]
    self._dropout = CheckpointedDropout(dropout, seed=seed)
    self._logit = tf_keras.layers.Dense(outputs)

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


def sequence_keys(resolved_spec: Any) -> List[str]:
  """The features of ``resolved_spec`` that are embedded as sequences."""
  return [key for key, feature in resolved_spec.features.items()
          if feature.is_sequence]
