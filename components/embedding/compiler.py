"""Compilation of a resolved spec to `tf.tpu.experimental.embedding` configs.

One `TableConfig` per table (per column, or per shared group) and one
`FeatureConfig` per feature key. Every table carries its optimizer: the spec
optimizer, or, for a column with `learning_rate_fn`, a copy of it whose
learning rate is `lambda: learning_rate_fn(global_step)`. Tables with the same
`learning_rate_fn` share one callable and one optimizer object, because
`TPUEmbedding` allocates one dynamic learning rate per distinct callable.
Tables without an initializer get `initializer=None`, which TensorFlow turns
into its own default, truncated normal with stddev 1/sqrt(dim). Tables with
`oov_rows='zero'` get their initializer wrapped in `oov.ZeroOovRows`, so that
every path that creates the table from the `TableConfig` (CPU, TPU engines)
starts the OOV rows at zero.
"""

from typing import Any, Callable, Dict, Optional

import tensorflow as tf

_EMBEDDING = tf.tpu.experimental.embedding


def _check_global_step(global_step: Any, what: str) -> None:
  if global_step is None:
    raise ValueError(
        f'{what} is a schedule of the global step: pass global_step='
        'tf.Variable(0, dtype=tf.int64) (the step counter the training loop '
        'increments) to compile().')
  if not global_step.dtype.is_integer:
    raise ValueError(f'global_step must be an integer variable, got dtype '
                     f'{global_step.dtype.name}.')


class _BoundSchedule:
  """A zero-argument learning rate: ``schedule(global_step)``, read each step.

  A class rather than a lambda so that AutoGraph need not convert it.
  """

  def __init__(self, schedule: Callable[[Any], Any], global_step: Any):
    self._schedule = schedule
    self._global_step = global_step

  def __call__(self) -> Any:
    return self._schedule(self._global_step)


class _LearningRates:
  """Binds schedules to the global step, one callable per distinct schedule."""

  def __init__(self, global_step: Any):
    self._global_step = global_step
    self._bound: Dict[Any, Callable[[], Any]] = {}

  def bind(self, schedule: Callable[[Any], Any], what: str
          ) -> Callable[[], Any]:
    if schedule not in self._bound:
      _check_global_step(self._global_step, what)
      self._bound[schedule] = _BoundSchedule(schedule, self._global_step)
    return self._bound[schedule]


def _tf_optimizer(optimizer: Any, learning_rate_fn: Optional[Callable],
                  rates: _LearningRates, cache: Dict[Any, Any]) -> Any:
  """Returns the TF optimizer of a table; memoised per learning-rate source."""
  source = learning_rate_fn if learning_rate_fn is not None else (
      optimizer.learning_rate)
  if source not in cache:
    if callable(source):
      what = ('learning_rate_fn' if learning_rate_fn is not None
              else f'{type(optimizer).__name__}.learning_rate')
      cache[source] = optimizer.to_tf(learning_rate=rates.bind(source, what))
    else:
      cache[source] = optimizer.to_tf(learning_rate=source)
  return cache[source]


def compile_optimizer(optimizer: Any, global_step: Any = None) -> Any:
  """Returns the TF optimizer of `optimizer`, its schedule bound to the step."""
  return _tf_optimizer(optimizer, None, _LearningRates(global_step), {})


def compile_feature_configs(spec: Any, global_step: Any = None
                           ) -> Dict[str, Any]:
  """Returns `{feature_key: FeatureConfig}` for a `ResolvedEmbeddingSpec`.

  Args:
    spec: a `resolved.ResolvedEmbeddingSpec`.
    global_step: an integer `tf.Variable` read by the learning-rate callables;
      required when any learning rate is a schedule.

  Raises:
    ValueError: if a schedule is used and `global_step` is missing.
  """
  rates = _LearningRates(global_step)
  cache: Dict[Any, Any] = {}
  tables = {}
  for table in spec.tables.values():
    tables[table.name] = _EMBEDDING.TableConfig(
        vocabulary_size=table.vocabulary_size,
        dim=table.dimension,
        initializer=table.compiled_initializer(),
        optimizer=_tf_optimizer(spec.optimizer, table.learning_rate_fn, rates,
                                cache),
        combiner=table.combiner,
        name=table.name)
  return {
      key: _EMBEDDING.FeatureConfig(
          table=tables[feature.table_name],
          max_sequence_length=feature.max_sequence_length,
          validate_weights_and_indices=feature.validate_weights_and_indices,
          name=key)
      for key, feature in spec.features.items()
  }
