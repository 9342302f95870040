"""Embedding-table initializers that serialise by name.

The TPU embedding API calls a table's initializer as `init(shape, dtype=...)`
(on a TPU once per host shard, with the shard's shape). Initializers built with
`initializer(name, **params)` keep that contract and serialise to JSON.

Registered initializers:
  truncated_normal(mean=0.0, stddev=None, seed=None)
      `stddev=None` means `1/sqrt(dimension)`, the dimension being the last
      entry of the shape; this is also the default of every column, as in TF
      1.15's `tf.tpu.experimental.embedding_column`.
  random_uniform(minval=-0.05, maxval=0.05, seed=None)
  random_normal(mean=0.0, stddev=0.05, seed=None)
  zeros()
  constant(value=0.0)
A dotted path names a module-level function `fn(shape, dtype, **params)`.
"""

import math
from typing import Any, Optional, Sequence

import tensorflow as tf

from components.embedding import registry


def _default_stddev(shape: Sequence[int]) -> float:
  return 1.0 / math.sqrt(int(shape[-1]))


def truncated_normal(shape: Sequence[int], dtype: Any, mean: float = 0.0,
                     stddev: Optional[float] = None,
                     seed: Optional[int] = None) -> tf.Tensor:
  """Truncated normal values; `stddev=None` means `1/sqrt(shape[-1])`."""
  if stddev is None:
    stddev = _default_stddev(shape)
  return tf.random.truncated_normal(shape, mean=mean, stddev=stddev,
                                    dtype=dtype, seed=seed)


def random_uniform(shape: Sequence[int], dtype: Any, minval: float = -0.05,
                   maxval: float = 0.05,
                   seed: Optional[int] = None) -> tf.Tensor:
  """Uniform values in `[minval, maxval)`."""
  return tf.random.uniform(shape, minval=minval, maxval=maxval, dtype=dtype,
                           seed=seed)


def random_normal(shape: Sequence[int], dtype: Any, mean: float = 0.0,
                  stddev: float = 0.05,
                  seed: Optional[int] = None) -> tf.Tensor:
  """Normal values."""
  return tf.random.normal(shape, mean=mean, stddev=stddev, dtype=dtype,
                          seed=seed)


def zeros(shape: Sequence[int], dtype: Any) -> tf.Tensor:
  """All zeros."""
  return tf.zeros(shape, dtype=dtype)


def constant(shape: Sequence[int], dtype: Any, value: float = 0.0) -> tf.Tensor:
  """All entries equal to `value`."""
  return tf.fill(shape, tf.cast(value, dtype))


def _validate(name: str, params: dict) -> None:
  """Checks ranges that TensorFlow would only reject at variable creation."""
  stddev = params.get('stddev')
  if stddev is not None and not stddev > 0:
    raise ValueError(f'initializer {name!r}: `stddev` must be > 0, '
                     f'got {stddev!r}.')
  if name == 'random_uniform':
    low, high = params.get('minval', -0.05), params.get('maxval', 0.05)
    if not low < high:
      raise ValueError(f'initializer random_uniform: `minval` ({low}) must '
                       f'be < `maxval` ({high}).')


class Initializer(registry.NamedCallable):
  """A serialisable table initializer `(shape, dtype) -> tensor`."""

  _REGISTRY = {
      'truncated_normal': truncated_normal,
      'random_uniform': random_uniform,
      'random_normal': random_normal,
      'zeros': zeros,
      'constant': constant,
  }
  _KIND = 'initializer'
  _CALL_ARGS = 2

  def __init__(self, name: str, **params: Any):
    super().__init__(name, **params)
    if self._name:
      _validate(self._name, self._params)

  def __call__(self, shape: Sequence[int], dtype: Any = tf.float32,
               **unused_kwargs: Any) -> tf.Tensor:
    return self._fn(shape, tf.as_dtype(dtype or tf.float32), **self._params)


def initializer(name: str, **params: Any) -> Initializer:
  """Returns an initializer by registered name or by a function's dotted path.

  Args:
    name: one of `Initializer.registered_names()`, or the dotted path of a
      module-level function `fn(shape, dtype, **params)`.
    **params: JSON-serialisable keyword parameters.

  Raises:
    ValueError: for an unknown name, a path that does not import, or
      parameters the initializer does not accept.
  """
  return Initializer(name, **params)
