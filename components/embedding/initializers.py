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

Built whole, a random table holds up to three full-size tensors at once (the
unit draw, its product with the scale, the sum with the shift), and
TensorFlow's CPU allocator keeps the memory it reached. The registered random
initializers, `TableConfig`'s default and `oov.ZeroOovRows` therefore also
describe their values as a `RowRecipe`: a full-size unit draw, finished row
block by row block. `initialize_in_place` finishes a variable created from the
draw in its own buffer, with the same values as the plain call
(`CpuEmbedding.build` does this for every table that has a recipe).
"""

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import tensorflow as tf

from components.embedding import registry


def _default_stddev(shape: Sequence[int]) -> float:
  return 1.0 / math.sqrt(int(shape[-1]))


@dataclasses.dataclass(frozen=True)
class RowRecipe:
  """An initializer's values: a full-size draw, finished by row blocks.

  The values are `finish(draw(), 0)`. `finish(rows, first_row)` maps a block
  of the draw's rows (the first being row `first_row`) to their values, row by
  row and element by element, so finishing the blocks of a variable created
  from `draw()` in place gives the same values without a second full-size
  tensor (see `initialize_in_place`). `draw` resolves the random seeds when
  it is called, as the plain initializer does.
  """
  draw: Callable[[], tf.Tensor]
  finish: Callable[[tf.Tensor, int], tf.Tensor]

  def values(self) -> tf.Tensor:
    """The initializer's values, built whole."""
    return self.finish(self.draw(), 0)


def _op_seeds(seed: Optional[int]) -> Tuple[int, int]:
  """The op seeds `tf.random.*` derive from `seed` and the global seed."""
  seed1, seed2 = tf.compat.v1.get_seed(seed)
  return seed1 or 0, seed2 or 0


def _affine_recipe(raw_op: Callable[..., tf.Tensor], shape: Sequence[int],
                   dtype: Any, scale: Any, shift: Any,
                   seed: Optional[int]) -> RowRecipe:
  """`raw_op`'s unit sample times `scale` plus `shift`.

  The same ops, in the same order, as `tf.random.truncated_normal`,
  `tf.random.normal` and `tf.random.uniform` (float): their values, bit for
  bit, for the same seeds.
  """
  shape = [int(size) for size in shape]

  def draw() -> tf.Tensor:
    seed1, seed2 = _op_seeds(seed)
    return raw_op(shape=shape, dtype=dtype, seed=seed1, seed2=seed2)

  def finish(rows: tf.Tensor, unused_first_row: int) -> tf.Tensor:
    return tf.add(tf.multiply(rows, tf.convert_to_tensor(scale, dtype)),
                  tf.convert_to_tensor(shift, dtype))

  return RowRecipe(draw, finish)


def _truncated_normal_recipe(shape: Sequence[int], dtype: Any,
                             mean: float = 0.0, stddev: Optional[float] = None,
                             seed: Optional[int] = None) -> RowRecipe:
  if stddev is None:
    stddev = _default_stddev(shape)
  return _affine_recipe(tf.raw_ops.TruncatedNormal, shape, dtype, stddev, mean,
                        seed)


def _random_uniform_recipe(shape: Sequence[int], dtype: Any,
                           minval: float = -0.05, maxval: float = 0.05,
                           seed: Optional[int] = None) -> RowRecipe:
  # The range is a difference of `dtype` values, as in `tf.random.uniform`.
  scale = (tf.convert_to_tensor(maxval, dtype) -
           tf.convert_to_tensor(minval, dtype))
  return _affine_recipe(tf.raw_ops.RandomUniform, shape, dtype, scale, minval,
                        seed)


def _random_normal_recipe(shape: Sequence[int], dtype: Any, mean: float = 0.0,
                          stddev: float = 0.05,
                          seed: Optional[int] = None) -> RowRecipe:
  return _affine_recipe(tf.raw_ops.RandomStandardNormal, shape, dtype, stddev,
                        mean, seed)


def truncated_normal(shape: Sequence[int], dtype: Any, mean: float = 0.0,
                     stddev: Optional[float] = None,
                     seed: Optional[int] = None) -> tf.Tensor:
  """Truncated normal values; `stddev=None` means `1/sqrt(shape[-1])`."""
  return _truncated_normal_recipe(shape, dtype, mean, stddev, seed).values()


def random_uniform(shape: Sequence[int], dtype: Any, minval: float = -0.05,
                   maxval: float = 0.05,
                   seed: Optional[int] = None) -> tf.Tensor:
  """Uniform values in `[minval, maxval)`."""
  return _random_uniform_recipe(shape, dtype, minval, maxval, seed).values()


def random_normal(shape: Sequence[int], dtype: Any, mean: float = 0.0,
                  stddev: float = 0.05,
                  seed: Optional[int] = None) -> tf.Tensor:
  """Normal values."""
  return _random_normal_recipe(shape, dtype, mean, stddev, seed).values()


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


_ROW_RECIPES = {
    truncated_normal: _truncated_normal_recipe,
    random_uniform: _random_uniform_recipe,
    random_normal: _random_normal_recipe,
}

# The class of `TableConfig`'s default initializer (truncated normal, stddev
# 1/sqrt(dim)), found through the public API.
_TABLE_DEFAULT_INITIALIZER = type(
    tf.tpu.experimental.embedding.TableConfig(
        vocabulary_size=1, dim=1, name='default_initializer').initializer)


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

  def row_recipe(self, shape: Sequence[int],
                 dtype: Any = tf.float32) -> Optional[RowRecipe]:
    """The values of `self(shape, dtype)` as a `RowRecipe`, if it has one.

    The registered random initializers have one; the constant ones need none
    (a variable holds their filled tensor without a copy), nor do functions
    named by dotted path get one.
    """
    builder = _ROW_RECIPES.get(self._fn)
    if builder is None:
      return None
    return builder(shape, tf.as_dtype(dtype or tf.float32), **self._params)


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


def row_recipe(initializer: Any, shape: Sequence[int],
               dtype: Any = tf.float32) -> Optional[RowRecipe]:
  """The `RowRecipe` of `initializer(shape, dtype)`, or None if it has none.

  Known: this module's `Initializer`s, objects with a `row_recipe(shape,
  dtype)` method (such as `oov.ZeroOovRows`) and `TableConfig`'s default
  truncated normal without a seed (with one, it draws statelessly).
  """
  if hasattr(initializer, 'row_recipe'):
    return initializer.row_recipe(shape, dtype)
  # Exactly that class: a subclass may compute other values.
  if (initializer.__class__ is _TABLE_DEFAULT_INITIALIZER and
      not getattr(initializer, 'seed', None)):
    return _truncated_normal_recipe(
        shape, tf.as_dtype(dtype or tf.float32), initializer.mean,
        initializer.stddev, initializer.seed)
  return None


# Elements finished per block: 4 MiB of float32, so that the transient
# tensors of `initialize_in_place` stay small against any real table.
_BLOCK_ELEMENTS = 1 << 20


def initialize_in_place(variable: tf.Variable, recipe: RowRecipe,
                        block_elements: int = _BLOCK_ELEMENTS) -> None:
  """Finishes `variable`, created from `recipe.draw()`, block by block.

  Each block of rows is read, finished and written back into the variable's
  own buffer (eagerly), so that the peak memory is the variable plus one
  block, instead of the two or three full-size tensors of the whole
  computation.
  """
  rows = int(variable.shape[0])
  row_elements = max(1, math.prod(int(d) for d in variable.shape[1:]))
  block_rows = max(1, block_elements // row_elements)
  for start in range(0, rows, block_rows):
    row_ids = tf.range(start, min(rows, start + block_rows), dtype=tf.int64)
    # Sparse reads and writes: a dense read of a variable that a sparse op
    # has touched (copy-on-read mode) copies the whole variable.
    values = recipe.finish(variable.sparse_read(row_ids), start)
    variable.scatter_update(tf.IndexedSlices(values, row_ids))
  # Dense reads share the buffer again, as after a plain creation.
  tf.raw_ops.DisableCopyOnRead(resource=variable.handle)
