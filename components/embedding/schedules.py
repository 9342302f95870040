"""Learning-rate schedules, `global_step -> learning rate`, serialisable.

A column's `learning_rate_fn` (TF 1.15's TPU `embedding_column` argument) and
an optimizer's `learning_rate` may be any callable of the global step in
process, but only schedules built with `learning_rate_schedule` (registered
name or dotted path) or module-level functions survive `EmbeddingSpec.to_json`.

Registered schedules (all return a float32 scalar tensor):
  constant(learning_rate)
  exponential_decay(initial_learning_rate, decay_steps, decay_rate,
                    staircase=False)
      initial_learning_rate * decay_rate ** (step / decay_steps), with the
      exponent floored when `staircase`.
  piecewise_constant(boundaries, values)
      values[0] while step <= boundaries[0], values[i] while
      boundaries[i-1] < step <= boundaries[i], values[-1] afterwards (the
      semantics of `tf.compat.v1.train.piecewise_constant`).
  linear_warmup_cosine_decay(peak_learning_rate, warmup_steps, decay_steps,
                             alpha=0.0)
      rises linearly from 0 to the peak over `warmup_steps`, then follows a
      cosine from the peak down to `alpha * peak` over `decay_steps` and stays
      there.
"""

import math
from typing import Any, Callable, Dict, Sequence, Union

import tensorflow as tf

from components.embedding import registry

LearningRate = Union[float, Callable[[Any], Any]]


def _step(global_step: Any) -> tf.Tensor:
  return tf.cast(global_step, tf.float32)


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _positive_number(value: Any, name: str, schedule: str) -> None:
  _require(isinstance(value, (int, float)) and not isinstance(value, bool)
           and value > 0,
           f'{schedule}: `{name}` must be a number > 0, got {value!r}.')


def constant(global_step: Any, learning_rate: float) -> tf.Tensor:
  """A learning rate that does not depend on the step."""
  del global_step
  return tf.constant(learning_rate, tf.float32)


def exponential_decay(global_step: Any, initial_learning_rate: float,
                      decay_steps: int, decay_rate: float,
                      staircase: bool = False) -> tf.Tensor:
  """`initial_learning_rate * decay_rate ** (step / decay_steps)`."""
  exponent = _step(global_step) / float(decay_steps)
  if staircase:
    exponent = tf.floor(exponent)
  return initial_learning_rate * tf.pow(float(decay_rate), exponent)


def piecewise_constant(global_step: Any, boundaries: Sequence[float],
                       values: Sequence[float]) -> tf.Tensor:
  """`values[i]` for the i-th interval `(boundaries[i-1], boundaries[i]]`."""
  step = _step(global_step)
  passed = tf.reduce_sum(
      tf.cast(step > tf.constant(boundaries, tf.float32), tf.int32))
  return tf.gather(tf.constant(values, tf.float32), passed)


def linear_warmup_cosine_decay(global_step: Any, peak_learning_rate: float,
                               warmup_steps: int, decay_steps: int,
                               alpha: float = 0.0) -> tf.Tensor:
  """Linear warm-up to the peak, then cosine decay to `alpha * peak`."""
  step = _step(global_step)
  warmup = float(max(warmup_steps, 1))
  warm = peak_learning_rate * tf.minimum(step / warmup, 1.0)
  progress = tf.clip_by_value((step - warmup_steps) / float(decay_steps),
                              0.0, 1.0)
  cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
  decayed = peak_learning_rate * ((1.0 - alpha) * cosine + alpha)
  return tf.where(step < warmup_steps, warm, decayed)


def _validate_constant(params: Dict[str, Any]) -> None:
  _positive_number(params.get('learning_rate'), 'learning_rate', 'constant')


def _validate_exponential_decay(params: Dict[str, Any]) -> None:
  _positive_number(params.get('initial_learning_rate'),
                   'initial_learning_rate', 'exponential_decay')
  _positive_number(params.get('decay_steps'), 'decay_steps',
                   'exponential_decay')
  _positive_number(params.get('decay_rate'), 'decay_rate', 'exponential_decay')


def _validate_piecewise_constant(params: Dict[str, Any]) -> None:
  boundaries = list(params.get('boundaries') or [])
  values = list(params.get('values') or [])
  _require(len(values) == len(boundaries) + 1,
           'piecewise_constant: `values` must have one more entry than '
           f'`boundaries`; got {len(values)} values for {len(boundaries)} '
           'boundaries.')
  _require(boundaries == sorted(boundaries) and
           len(set(boundaries)) == len(boundaries),
           'piecewise_constant: `boundaries` must be strictly increasing, '
           f'got {boundaries}.')


def _validate_linear_warmup_cosine_decay(params: Dict[str, Any]) -> None:
  name = 'linear_warmup_cosine_decay'
  _positive_number(params.get('peak_learning_rate'), 'peak_learning_rate',
                   name)
  _positive_number(params.get('decay_steps'), 'decay_steps', name)
  warmup = params.get('warmup_steps')
  _require(isinstance(warmup, int) and warmup >= 0,
           f'{name}: `warmup_steps` must be an int >= 0, got {warmup!r}.')
  alpha = params.get('alpha', 0.0)
  _require(isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0,
           f'{name}: `alpha` must be in [0, 1], got {alpha!r}.')


_VALIDATORS = {
    'constant': _validate_constant,
    'exponential_decay': _validate_exponential_decay,
    'piecewise_constant': _validate_piecewise_constant,
    'linear_warmup_cosine_decay': _validate_linear_warmup_cosine_decay,
}


class LearningRateSchedule(registry.NamedCallable):
  """A serialisable `global_step -> learning rate` callable."""

  _REGISTRY = {
      'constant': constant,
      'exponential_decay': exponential_decay,
      'piecewise_constant': piecewise_constant,
      'linear_warmup_cosine_decay': linear_warmup_cosine_decay,
  }
  _KIND = 'learning-rate schedule'
  _CALL_ARGS = 1

  def __init__(self, name: str, **params: Any):
    super().__init__(name, **params)
    if name in _VALIDATORS:
      _VALIDATORS[name](self._params)

  def __call__(self, global_step: Any) -> Any:
    return self._fn(global_step, **self._params)

  def reaches_zero(self) -> bool:
    """Whether a registered schedule returns 0 at some step.

    `linear_warmup_cosine_decay` starts at 0 when it warms up and ends at 0
    with `alpha=0`; `piecewise_constant` does with a value <= 0. Schedules
    given by a dotted path cannot be inspected and count as never 0.
    """
    params = self._params
    if self._name == 'linear_warmup_cosine_decay':
      return params['warmup_steps'] > 0 or not params.get('alpha', 0.0)
    if self._name == 'piecewise_constant':
      return any(value <= 0 for value in params['values'])
    return False


def learning_rate_schedule(name: str, **params: Any) -> LearningRateSchedule:
  """Returns a schedule by registered name or by a function's dotted path.

  Args:
    name: one of `LearningRateSchedule.registered_names()`, or the dotted path
      of a module-level function `fn(global_step, **params)`.
    **params: JSON-serialisable keyword parameters of the schedule.

  Raises:
    ValueError: for an unknown name, a path that does not import, or
      parameters the schedule does not accept or that are out of range.
  """
  return LearningRateSchedule(name, **params)


def check_learning_rate(value: Any, what: str) -> None:
  """Raises unless `value` is a number > 0 or a callable of the global step."""
  if callable(value):
    return
  if (isinstance(value, bool) or not isinstance(value, (int, float))
      or not value > 0):
    raise ValueError(
        f'{what} must be a number > 0 or a callable global_step -> learning '
        f'rate (see learning_rate_schedule); got {value!r}.')
