"""How the OOV rows of a table start, and how they may be set after training.

A Transform vocabulary with `num_oov_buckets=k` gives its table `k` rows past
the vocabulary, `[vocabulary_size - k, vocabulary_size)`, shared by every token
the vocabulary does not hold. When training never reaches them (for example
with `frequency_threshold=1` every training token is in the vocabulary), they
keep their random initial values, and every unseen user or item at evaluation
or serving time gets a random embedding. Three ways to start them:

  'random'               the table's initializer, like every other row (the
                         default, TF 1.15's behaviour);
  'zero'                 zeros: an unseen token contributes nothing until
                         training moves the row. `ZeroOovRows` wraps the
                         table's initializer in the compiled `TableConfig`,
                         so the CPU path, every TPU engine and checkpoints see
                         the same initial values;
  'mean_after_training'  random at the start; after the last step, the OOV
                         rows that training never touched are set to the mean
                         of the rows it touched (`set_untouched_rows_to_mean`),
                         so an unseen token looks like an average one. The
                         trainer applies it once, before evaluation and export.

OOV rows that training does touch keep what they learned in every mode.
"""

from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from components.embedding import initializers

RANDOM = 'random'
ZERO = 'zero'
MEAN_AFTER_TRAINING = 'mean_after_training'
OOV_ROWS = (RANDOM, ZERO, MEAN_AFTER_TRAINING)


def check_mode(mode: Any, what: str) -> None:
  """Raises ValueError unless `mode` is one of `OOV_ROWS`."""
  if mode not in OOV_ROWS:
    raise ValueError(f'{what} must be one of {list(OOV_ROWS)}, got {mode!r}.')


class ZeroOovRows:
  """A table initializer: `base`'s values, with rows from `first_row` zero.

  The TPU embedding API calls a table's initializer with the full table shape
  on the CPU path, on TPUEmbeddingV0, on single-host TPUEmbedding and (it
  builds the full table, then slices it) on TPUEmbeddingV2; a shape of other
  rows (a multi-host shard) is refused, because the shard's rows are unknown
  here.

  Attributes:
    base: the table's own initializer, or None for TensorFlow's default
      (truncated normal, stddev 1/sqrt(dim)).
    first_row: the first OOV row.
    vocabulary_size: the table's rows, OOV rows included.
    table_name: for error messages.
  """

  def __init__(self, base: Optional[Any], first_row: int,
               vocabulary_size: int, table_name: str):
    if not 0 <= first_row <= vocabulary_size:
      raise ValueError(
          f'Table {table_name!r}: the first OOV row {first_row} is outside '
          f'[0, {vocabulary_size}].')
    self.base = base
    self.first_row = first_row
    self.vocabulary_size = vocabulary_size
    self.table_name = table_name

  def __call__(self, shape: Sequence[int], dtype: Any = tf.float32,
               **unused_kwargs: Any) -> tf.Tensor:
    recipe = self.row_recipe(shape, dtype)
    if recipe is not None:
      return recipe.values()
    dtype = tf.as_dtype(dtype or tf.float32)
    return self._zero_oov(
        tf.convert_to_tensor(self.base(shape, dtype=dtype), dtype), 0)

  def row_recipe(self, shape: Sequence[int], dtype: Any = tf.float32
                ) -> Optional[initializers.RowRecipe]:
    """`base`'s `RowRecipe` with the OOV rows zeroed; None if `base` has none.

    See `initializers.initialize_in_place`.
    """
    self._check_whole_table(shape)
    dtype = tf.as_dtype(dtype or tf.float32)
    base = (self.base if self.base is not None else
            initializers.initializer('truncated_normal'))
    recipe = initializers.row_recipe(base, shape, dtype)
    if recipe is None:
      return None
    return initializers.RowRecipe(
        recipe.draw,
        lambda rows, first_row: self._zero_oov(
            recipe.finish(rows, first_row), first_row))

  def _check_whole_table(self, shape: Sequence[int]) -> None:
    rows = int(shape[0])
    if rows != self.vocabulary_size:
      raise ValueError(
          f'Table {self.table_name!r}: oov_rows=\'zero\' needs the initializer '
          f'to be called with the whole table ({self.vocabulary_size} rows), '
          f'got a shard of {rows} rows (multi-host TPU slices shard tables on '
          'the hosts). Use oov_rows=\'mean_after_training\' or \'random\'.')

  def _zero_oov(self, values: tf.Tensor, first_row: int) -> tf.Tensor:
    """`values`, rows `first_row`... of the table, with the OOV rows zero."""
    rows = tf.shape(values)[0]
    keep = tf.range(first_row, first_row + rows) < self.first_row
    return tf.where(keep[:, tf.newaxis], values, tf.zeros_like(values))

  def __eq__(self, other: Any) -> bool:
    return (isinstance(other, ZeroOovRows) and
            (self.base, self.first_row, self.vocabulary_size,
             self.table_name) == (other.base, other.first_row,
                                  other.vocabulary_size, other.table_name))

  def __hash__(self) -> int:
    return hash((ZeroOovRows, self.first_row, self.vocabulary_size,
                 self.table_name))

  def __repr__(self) -> str:
    return (f'ZeroOovRows({self.base!r}, first_row={self.first_row}, '
            f'vocabulary_size={self.vocabulary_size})')


def mean_of_touched_rows(values: np.ndarray, touched: np.ndarray
                        ) -> Optional[np.ndarray]:
  """The mean of the rows `touched` marks, or None when none was touched."""
  touched = np.asarray(touched, bool)
  if not touched.any():
    return None
  return np.asarray(values)[touched].mean(axis=0)


def set_untouched_rows_to_mean(table: tf.Variable, first_row: int,
                               touched: np.ndarray) -> int:
  """Sets the untouched rows from `first_row` to the mean of touched rows.

  Runs on the host, on a table variable that can be read and assigned (the
  CPU path's table, or a host copy restored from a TPU checkpoint).
  Idempotent: the touched rows, hence their mean, do not change.

  Args:
    table: the `[rows, dim]` table variable.
    first_row: the first OOV row.
    touched: `[rows]` booleans, True for rows some training batch looked up.

  Returns:
    How many rows were set (0 when training touched no row at all).
  """
  values = table.numpy()
  touched = np.asarray(touched, bool)
  mean = mean_of_touched_rows(values, touched)
  rows = np.flatnonzero(~touched[first_row:]) + first_row
  if mean is None or not rows.size:
    return 0
  table.scatter_nd_update(
      rows[:, np.newaxis],
      np.broadcast_to(mean, (rows.size, values.shape[1])).astype(values.dtype))
  return int(rows.size)
