"""Serialisable embedding optimizers mirroring `tf.tpu.experimental.embedding`.

Each dataclass carries the hyper-parameters (names and defaults) of the TPU
embedding optimizer of the same name in
`tensorflow/python/tpu/tpu_embedding_v2_utils.py`, validates them when built
(where TensorFlow would only fail at `TPUEmbedding` creation or later) and
converts to the TensorFlow object with `to_tf()`. Arguments after
`learning_rate` are keyword arguments.

`learning_rate` is a number or a callable `global_step -> learning rate`
(see `schedules.learning_rate_schedule`); the TensorFlow optimizers take a
callable of no arguments, which the compiler builds by binding the global-step
variable.

`slot_variable_creation_fn` is not offered: it is a Python callable that cannot
travel in JSON.
"""

import dataclasses
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Union

import tensorflow as tf

from components.embedding import registry
from components.embedding import schedules

ClipValue = Optional[Union[float, Tuple[Optional[float], Optional[float]]]]


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class EmbeddingOptimizer:
  """Hyper-parameters common to all TPU embedding optimizers."""

  learning_rate: schedules.LearningRate = 0.01
  use_gradient_accumulation: bool = True
  clip_weight_min: Optional[float] = None
  clip_weight_max: Optional[float] = None
  weight_decay_factor: Optional[float] = None
  multiply_weight_decay_factor_by_learning_rate: Optional[bool] = None
  clipvalue: ClipValue = None
  low_dimensional_packing_status: bool = False

  SLOT_NAMES: ClassVar[Tuple[str, ...]] = ()
  _TF_CLASS: ClassVar[str] = ''

  def __post_init__(self):
    name = type(self).__name__
    if not self._TF_CLASS:
      raise TypeError('EmbeddingOptimizer is a base class; use one of '
                      f'{sorted(OPTIMIZERS)}.')
    schedules.check_learning_rate(self.learning_rate,
                                  f'{name}: `learning_rate`')
    if isinstance(self.clipvalue, list):
      object.__setattr__(self, 'clipvalue', tuple(self.clipvalue))
    _check(self.clipvalue is None or self.use_gradient_accumulation,
           f'{name}: gradient clipping (`clipvalue={self.clipvalue}`) needs '
           '`use_gradient_accumulation=True`.')
    _check(self.clip_weight_min is None or self.clip_weight_max is None or
           self.clip_weight_min <= self.clip_weight_max,
           f'{name}: `clip_weight_min` ({self.clip_weight_min}) must be <= '
           f'`clip_weight_max` ({self.clip_weight_max}).')
    _check(self.weight_decay_factor is None or self.weight_decay_factor >= 0,
           f'{name}: `weight_decay_factor` must be >= 0, got '
           f'{self.weight_decay_factor}.')
    self._validate()

  def _validate(self) -> None:
    """Checks the hyper-parameters specific to one optimizer."""

  @property
  def num_slots(self) -> int:
    """The number of table-sized float32 slot variables the optimizer keeps."""
    return len(self.SLOT_NAMES)

  def _tf_kwargs(self) -> Dict[str, Any]:
    kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    if not kwargs['low_dimensional_packing_status']:
      del kwargs['low_dimensional_packing_status']
    return kwargs

  def to_tf(self, learning_rate: Optional[Union[float, Callable[[], Any]]]
            = None) -> Any:
    """Returns the `tf.tpu.experimental.embedding` optimizer.

    Args:
      learning_rate: a number or a callable of no arguments that replaces
        `self.learning_rate`; needed when that is a schedule of the global
        step, which TensorFlow cannot call.

    Raises:
      ValueError: if the learning rate is a schedule and no replacement is
        given.
    """
    kwargs = self._tf_kwargs()
    if learning_rate is not None:
      kwargs['learning_rate'] = learning_rate
    elif callable(self.learning_rate):
      raise ValueError(
          f'{type(self).__name__}.to_tf(): the learning rate is a schedule of '
          'the global step; pass learning_rate=lambda: schedule(global_step) '
          '(EmbeddingSpec compilation does this).')
    tf_class = getattr(tf.tpu.experimental.embedding, self._TF_CLASS)
    return tf_class(**kwargs)

  def to_config(self) -> Dict[str, Any]:
    """Returns the JSON-ready form `{"type": <class name>, <fields>...}`."""
    config = {'type': type(self).__name__}
    for field in dataclasses.fields(self):
      config[field.name] = getattr(self, field.name)
    if callable(self.learning_rate):
      config['learning_rate'] = registry.callable_to_config(
          self.learning_rate, schedules.LearningRateSchedule,
          f'{type(self).__name__}.learning_rate')
    if isinstance(self.clipvalue, tuple):
      config['clipvalue'] = list(self.clipvalue)
    return config

  @staticmethod
  def from_config(config: Dict[str, Any]) -> 'EmbeddingOptimizer':
    """Inverse of `to_config`."""
    config = dict(config)
    type_name = config.pop('type', None)
    if type_name not in OPTIMIZERS:
      raise ValueError(f'Unknown embedding optimizer type {type_name!r}; '
                       f'expected one of {sorted(OPTIMIZERS)}.')
    if isinstance(config.get('learning_rate'), dict):
      config['learning_rate'] = registry.callable_from_config(
          config['learning_rate'], schedules.LearningRateSchedule)
    return OPTIMIZERS[type_name](**config)


@dataclasses.dataclass(frozen=True)
class SGD(EmbeddingOptimizer):
  """Stochastic gradient descent; no slot variables."""

  _TF_CLASS: ClassVar[str] = 'SGD'


@dataclasses.dataclass(frozen=True)
class Adagrad(EmbeddingOptimizer):
  """Adagrad; one slot (accumulators)."""

  learning_rate: schedules.LearningRate = 0.001
  initial_accumulator_value: float = 0.1

  SLOT_NAMES: ClassVar[Tuple[str, ...]] = ('accumulators',)
  _TF_CLASS: ClassVar[str] = 'Adagrad'

  def _validate(self) -> None:
    _check(self.initial_accumulator_value > 0,
           'Adagrad: `initial_accumulator_value` must be > 0, got '
           f'{self.initial_accumulator_value}.')


@dataclasses.dataclass(frozen=True)
class AdagradMomentum(EmbeddingOptimizer):
  """Adagrad with momentum; two slots (accumulators, momenta)."""

  learning_rate: schedules.LearningRate = 0.001
  momentum: float = 0.0
  use_nesterov: bool = False
  exponent: float = 2
  beta2: float = 1
  epsilon: float = 1e-10

  SLOT_NAMES: ClassVar[Tuple[str, ...]] = ('accumulators', 'momenta')
  _TF_CLASS: ClassVar[str] = 'AdagradMomentum'

  def _validate(self) -> None:
    _check(self.epsilon > 0,
           f'AdagradMomentum: `epsilon` must be > 0, got {self.epsilon}.')
    _check(self.exponent > 0,
           f'AdagradMomentum: `exponent` must be > 0, got {self.exponent}.')


@dataclasses.dataclass(frozen=True)
class FTRL(EmbeddingOptimizer):
  """FTRL; two slots (accumulators, linears)."""

  learning_rate: schedules.LearningRate = 0.001
  learning_rate_power: float = -0.5
  l1_regularization_strength: float = 0.0
  l2_regularization_strength: float = 0.0
  beta: float = 0.0
  initial_accumulator_value: float = 0.1
  multiply_linear_by_learning_rate: bool = False
  allow_zero_accumulator: bool = False

  SLOT_NAMES: ClassVar[Tuple[str, ...]] = ('accumulators', 'linears')
  _TF_CLASS: ClassVar[str] = 'FTRL'

  def _validate(self) -> None:
    _check(self.initial_accumulator_value > 0,
           'FTRL: `initial_accumulator_value` must be > 0, got '
           f'{self.initial_accumulator_value}.')
    _check(self.learning_rate_power <= 0,
           'FTRL: `learning_rate_power` must be <= 0, got '
           f'{self.learning_rate_power}.')
    _check(self.l1_regularization_strength >= 0 and
           self.l2_regularization_strength >= 0,
           'FTRL: regularization strengths must be >= 0, got l1='
           f'{self.l1_regularization_strength}, '
           f'l2={self.l2_regularization_strength}.')
    _check(self.beta >= 0,
           f'FTRL: `beta` must be >= 0, got {self.beta}: the update divides '
           'by `accumulators^p + beta`, which a negative beta can make 0 '
           '(NaN weights).')
    check_ftrl_learning_rate(self, self.learning_rate, 'FTRL.learning_rate')


def check_ftrl_learning_rate(optimizer: 'FTRL', learning_rate: Any,
                             what: str) -> None:
  """Refuses a learning rate that reaches 0 where FTRL divides by it.

  With `multiply_linear_by_learning_rate=False`, the TPU's FTRL update
  divides by the learning rate (see `tpu_update_rules`), so a rate of 0 (the
  first step of a warm-up from 0, the end of a cosine decay to 0) writes NaN
  into the rows a batch touches. TensorFlow documents
  `multiply_linear_by_learning_rate=True` as the setting for learning rates
  that ramp up from 0.

  Raises:
    ValueError: for a registered schedule that reaches 0 (see
      `LearningRateSchedule.reaches_zero`) without that setting. Schedules
      given by a dotted path cannot be inspected and are not refused.
  """
  if optimizer.multiply_linear_by_learning_rate:
    return
  if isinstance(learning_rate, schedules.LearningRateSchedule) and (
      learning_rate.reaches_zero()):
    raise ValueError(
        f'{what} {learning_rate!r} reaches 0, and FTRL with '
        '`multiply_linear_by_learning_rate=False` divides by the learning '
        'rate (NaN weights). Set multiply_linear_by_learning_rate=True on '
        'the FTRL optimizer, or use a schedule that stays above 0 (e.g. '
        'alpha > 0 and warmup_steps=0).')


@dataclasses.dataclass(frozen=True)
class Adam(EmbeddingOptimizer):
  """Adam, lazy by default as on the TPU; two slots (momenta, velocities)."""

  learning_rate: schedules.LearningRate = 0.001
  beta_1: float = 0.9
  beta_2: float = 0.999
  epsilon: float = 1e-07
  lazy_adam: bool = True
  sum_inside_sqrt: bool = True

  SLOT_NAMES: ClassVar[Tuple[str, ...]] = ('momenta', 'velocities')
  _TF_CLASS: ClassVar[str] = 'Adam'

  def _validate(self) -> None:
    _check(0.0 <= self.beta_1 < 1.0,
           f'Adam: `beta_1` must be in [0, 1), got {self.beta_1}.')
    _check(0.0 <= self.beta_2 < 1.0,
           f'Adam: `beta_2` must be in [0, 1), got {self.beta_2}.')
    _check(self.epsilon > 0,
           f'Adam: `epsilon` must be > 0, got {self.epsilon}.')
    _check(self.lazy_adam or self.use_gradient_accumulation,
           'Adam: `lazy_adam=False` needs `use_gradient_accumulation=True`.')


OPTIMIZERS = {cls.__name__: cls
              for cls in (SGD, Adagrad, AdagradMomentum, FTRL, Adam)}
