"""The TPU embedding optimizers' update rules, applied on the CPU or GPU.

`tf.tpu.experimental.embedding.TPUEmbedding` applies the embedding optimizer
(`tf.tpu.experimental.embedding.SGD`, `Adagrad`, `AdagradMomentum`, `Adam`,
`FTRL`) inside the TPU embedding engine. Keras optimizers follow different
rules (Keras Adagrad adds an epsilon, Keras Adam corrects the bias and moves
every row on every step, Keras FTRL has no `beta`), so a model trained on the
CPU with a Keras optimizer does not behave as it would on a TPU. This module
applies the TPU's own rules, as sparse updates of the rows a batch touched.

Sources: TensorFlow's
`tensorflow/core/protobuf/tpu/optimization_parameters.proto` (the rules, their
hyper-parameters and the CPU kernels they cite in
`tensorflow/core/kernels/training_ops.cc`), the docstrings of
`tensorflow/python/tpu/tpu_embedding_v2_utils.py`, and the reference
implementations in the tests of the SparseCore kernels (jax-tpu-embedding).

One step, for each table
------------------------
Notation: `w` a row of the table, `g` its gradient, `lr` the learning rate
(evaluated once per `apply_gradients` call when it is a callable), products,
powers and square roots element-wise.

1. Gradient accumulation. The gradients of the ids a batch looked up are
   summed per distinct id (an id looked up `k` times gets the sum of its `k`
   gradients, each already scaled by its weight and by the combiner); only
   those rows and their slots are read and written, so a step costs the same
   whatever the vocabulary size. `use_gradient_accumulation=False` (on a TPU a
   faster, less exact accumulation) changes nothing here: the sum is exact.
2. Gradient clipping (`clipvalue`, kept by the optimizer as
   `clip_gradient_min`/`clip_gradient_max`):
   `g = clip(g, clip_gradient_min, clip_gradient_max)`, on the summed gradient.
3. Weight decay (`weight_decay_factor`), decoupled as in TensorFlow's
   `DecoupledWeightDecayExtension` (which the proto cites) and applied to the
   touched rows before the optimizer's rule:
   `w = w - d * w` with `d = weight_decay_factor`, times `lr` when
   `multiply_weight_decay_factor_by_learning_rate` is true. The TPU's exact
   order (decay before or after the rule) is not documented; the two differ
   by `d * (update)`, a second-order term. FTRL recomputes `w` from its slots,
   so weight decay with FTRL raises `NotImplementedError`.
4. The optimizer's rule (below).
5. Weight clipping: `w = clip(w, clip_weight_min, clip_weight_max)`.

The rules
---------
SGD (no slots)::

  w = w - lr * g

Adagrad (slot `accumulators`, initialised to `initial_accumulator_value`;
no epsilon, unlike Keras)::

  accumulators = accumulators + g^2
  w = w - lr * g / sqrt(accumulators)

AdagradMomentum (slots `accumulators` and `momenta`, both initialised to 0;
arXiv:2002.11803)::

  accumulators = accumulators + g^2                          if beta2 == 1
  accumulators = beta2 * accumulators + (1 - beta2) * g^2    otherwise
  scaled = g * (accumulators + epsilon)^(-1 / exponent)
  momenta = momentum * momenta + scaled
  update = momentum * momenta + scaled   if use_nesterov
  update = momenta                       otherwise
  w = w - lr * update

The comment in the proto leaves out the factor `g` in `scaled`; the reference
implementation of the SparseCore kernel has it, as written here.

Adam (slots `momenta` and `velocities`, both initialised to 0)::

  momenta = beta_1 * momenta + (1 - beta_1) * g
  velocities = beta_2 * velocities + (1 - beta_2) * g^2
  w = w - lr * momenta / sqrt(velocities + epsilon^2)    if sum_inside_sqrt
  w = w - lr * momenta / (sqrt(velocities) + epsilon)    otherwise

Bias correction: the TPU does NOT correct the bias of the moments. The proto
says the TPU Adam "does not implement hyper-parameter update"; the user is to
pass a dynamic learning rate `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`
(`t` the 1-based step). `TPUEmbedding` does not do it for you, nor does this
module; `bias_corrected_learning_rate` builds such a callable.

`lazy_adam=True` (the default): only the rows a batch touched move.
`lazy_adam=False`: every row of the table is updated on every step, with a zero
gradient for the rows the batch did not touch, so all moments decay and the
rows with non-zero moments keep moving (weight decay and clipping then apply
to every row too). This is done densely, with a cost proportional to the
vocabulary size, as the TPU does.

FTRL (slots `accumulators`, initialised to `initial_accumulator_value`, and
`linears`, initialised to 0; `p = -learning_rate_power`)::

  new_accumulators = accumulators + g^2
  sigma = new_accumulators^p - accumulators^p
  if multiply_linear_by_learning_rate:
    linears = linears + lr * g - sigma * w
    quadratic = new_accumulators^p + beta + 2 * lr * l2
    threshold = lr * l1
  else:
    linears = linears + g - sigma / lr * w
    quadratic = (new_accumulators^p + beta) / lr + 2 * l2
    threshold = l1
  if |linears| > threshold:
    w = (sign(linears) * threshold - linears) / quadratic
  else:
    w = 0
  accumulators = new_accumulators

A NaN or inf gradient makes `linears` NaN; the weight then becomes NaN too
(not 0), as with the other rules, so that a non-finite check of the tables,
the activations or the loss (the Trainer's guard) finds the damage instead of
a zeroed row beside NaN slots. Configurations that divide by zero are refused
before training: a learning rate of 0 with
`multiply_linear_by_learning_rate=False` (here in `check_supported`; schedules
that reach 0 in `optimizers.FTRL` and `EmbeddingSpec`) and a negative `beta`.

`beta` is the paper's beta (Algorithm 1 of McMahan et al. 2013); other
TensorFlow FTRL implementations get the same with `l2 + beta / (2 * lr)`.
`allow_zero_accumulator` is accepted and changes nothing: the formulas above
are used as written (TensorFlow already rejects a non-positive
`initial_accumulator_value`, and newer TPU software ignores the flag).

Other options
-------------
`low_dimensional_packing_status` (a TPU memory layout) is ignored. The
learning rate may be a float or a zero-argument callable; inside a
`tf.function` the callable must compute its value with TensorFlow ops from
TensorFlow state (e.g. a step variable), as on a TPU, or the value traced
first stays frozen.
"""

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import tensorflow as tf

from components.embedding import native_kernels

_embedding = tf.tpu.experimental.embedding

SlotRows = Dict[str, tf.Tensor]
RuleResult = Tuple[tf.Tensor, SlotRows]
LearningRate = Union[float, Callable[[], float]]


def _sgd_rule(optimizer, params, slots, grads, lr) -> RuleResult:
  """Plain gradient descent."""
  del optimizer, slots
  return params - lr * grads, {}


def _adagrad_rule(optimizer, params, slots, grads, lr) -> RuleResult:
  """Adagrad without epsilon, as the TPU applies it."""
  del optimizer
  accumulators = slots['accumulators'] + tf.square(grads)
  params = params - lr * grads * tf.math.rsqrt(accumulators)
  return params, {'accumulators': accumulators}


def _adagrad_momentum_rule(optimizer, params, slots, grads, lr) -> RuleResult:
  """Adagrad with momentum (arXiv:2002.11803)."""
  beta2 = optimizer.beta2
  if beta2 == 1.0:
    accumulators = slots['accumulators'] + tf.square(grads)
  else:
    accumulators = (beta2 * slots['accumulators'] +
                    (1.0 - beta2) * tf.square(grads))
  scaled = grads * tf.pow(accumulators + optimizer.epsilon,
                          -1.0 / optimizer.exponent)
  momenta = optimizer.momentum * slots['momenta'] + scaled
  if optimizer.use_nesterov:
    update = optimizer.momentum * momenta + scaled
  else:
    update = momenta
  return params - lr * update, {
      'accumulators': accumulators,
      'momenta': momenta
  }


def _adam_step(optimizer, slots, grads, lr
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """Adam's step (subtracted from the weights) and its new slots."""
  momenta = (optimizer.beta_1 * slots['momenta'] +
             (1.0 - optimizer.beta_1) * grads)
  velocities = (optimizer.beta_2 * slots['velocities'] +
                (1.0 - optimizer.beta_2) * tf.square(grads))
  if optimizer.sum_inside_sqrt:
    denominator = tf.sqrt(velocities + optimizer.epsilon**2)
  else:
    denominator = tf.sqrt(velocities) + optimizer.epsilon
  return lr * momenta / denominator, {'momenta': momenta,
                                      'velocities': velocities}


def _adam_rule(optimizer, params, slots, grads, lr) -> RuleResult:
  """Adam without bias correction, as the TPU applies it."""
  step, new_slots = _adam_step(optimizer, slots, grads, lr)
  return params - step, new_slots


def _ftrl_rule(optimizer, params, slots, grads, lr) -> RuleResult:
  """FTRL-proximal with the TPU's `beta` and `multiply_linear_by_lr`."""
  power = -optimizer.learning_rate_power
  old_accumulators = slots['accumulators']
  accumulators = old_accumulators + tf.square(grads)
  new_power = tf.pow(accumulators, power)
  sigma = new_power - tf.pow(old_accumulators, power)
  l1 = optimizer.l1_regularization_strength
  l2 = optimizer.l2_regularization_strength
  if optimizer.multiply_linear_by_learning_rate:
    linears = slots['linears'] + lr * grads - sigma * params
    quadratic = new_power + optimizer.beta + 2.0 * lr * l2
    threshold = lr * l1
  else:
    linears = slots['linears'] + grads - sigma / lr * params
    quadratic = (new_power + optimizer.beta) / lr + 2.0 * l2
    threshold = tf.constant(l1, tf.float32)
  shrunk = (tf.sign(linears) * threshold - linears) / quadratic
  # Written so that a NaN (from a NaN or inf gradient) reaches the weight
  # instead of turning into a silent 0 beside NaN slots.
  params = tf.where(tf.abs(linears) <= threshold, tf.zeros_like(shrunk),
                    shrunk)
  return params, {'accumulators': accumulators, 'linears': linears}


_Rule = Callable[..., RuleResult]

# Optimizer class -> (its update rule, the slot names `TPUEmbedding` uses).
_RULES: Dict[type, Tuple[_Rule, Tuple[str, ...]]] = {
    _embedding.SGD: (_sgd_rule, ()),
    _embedding.Adagrad: (_adagrad_rule, ('accumulators',)),
    _embedding.AdagradMomentum: (_adagrad_momentum_rule,
                                 ('accumulators', 'momenta')),
    _embedding.Adam: (_adam_rule, ('momenta', 'velocities')),
    _embedding.FTRL: (_ftrl_rule, ('accumulators', 'linears')),
}


def _lookup_rule(optimizer) -> Tuple[_Rule, Tuple[str, ...]]:
  """Returns the rule and slot names of `optimizer`, or raises."""
  rule = _RULES.get(type(optimizer))
  if rule is None:
    raise NotImplementedError(
        f'{type(optimizer).__name__} is not a supported embedding optimizer; '
        'use one of tf.tpu.experimental.embedding.SGD, Adagrad, '
        'AdagradMomentum, Adam or FTRL.')
  return rule


def slot_names(optimizer) -> Tuple[str, ...]:
  """Names of the slot variables `TPUEmbedding` creates for `optimizer`."""
  return _lookup_rule(optimizer)[1]


def check_supported(optimizer, table_name: str) -> None:
  """Raises if `optimizer` uses an option these rules cannot reproduce.

  Args:
    optimizer: a `tf.tpu.experimental.embedding` optimizer.
    table_name: the table's name, for the error message.

  Raises:
    NotImplementedError: an unsupported optimizer class, or weight decay with
      FTRL.
  """
  _lookup_rule(optimizer)
  if isinstance(optimizer, _embedding.FTRL):
    _check_ftrl_divisions(optimizer, table_name)
  if (isinstance(optimizer, _embedding.FTRL) and
      optimizer.weight_decay_factor):
    raise NotImplementedError(
        f'Table {table_name!r}: weight_decay_factor is not supported with '
        'FTRL on the CPU (FTRL recomputes the weights from its slots and the '
        'TPU semantics of decaying them are not documented).')


def _check_ftrl_divisions(optimizer, table_name: str) -> None:
  """Raises for FTRL settings whose update divides by zero (NaN weights)."""
  if optimizer.beta < 0:
    raise ValueError(
        f'Table {table_name!r}: FTRL beta must be >= 0, got {optimizer.beta}; '
        'the update divides by accumulators^p + beta.')
  rate = optimizer.learning_rate
  if (not optimizer.multiply_linear_by_learning_rate and not callable(rate)
      and rate <= 0):
    raise ValueError(
        f'Table {table_name!r}: FTRL with learning rate {rate} and '
        'multiply_linear_by_learning_rate=False divides by the learning rate '
        '(NaN weights). Use a learning rate > 0, or set '
        'multiply_linear_by_learning_rate=True.')


def evaluate_learning_rate(learning_rate: LearningRate) -> tf.Tensor:
  """Returns the learning rate as a float32 scalar, calling it if callable."""
  if callable(learning_rate):
    learning_rate = learning_rate()
  return tf.cast(learning_rate, tf.float32)


def bias_corrected_learning_rate(learning_rate: LearningRate, beta_1: float,
                                 beta_2: float,
                                 step: tf.Variable) -> Callable[[], tf.Tensor]:
  """Returns Adam's bias-corrected learning rate as a callable.

  The TPU's Adam does not correct the bias of its moments; passing this
  callable as the `learning_rate` of `tf.tpu.experimental.embedding.Adam`
  gives `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)` with `t = step + 1`, which
  makes the update that of the original Adam up to where epsilon enters.

  Args:
    learning_rate: the base learning rate, a float or a callable.
    beta_1: the optimizer's `beta_1`.
    beta_2: the optimizer's `beta_2`.
    step: a variable holding the number of steps already applied (the caller
      increments it after each `apply_gradients`).
  """

  def corrected() -> tf.Tensor:
    t = tf.cast(step, tf.float32) + 1.0
    return (evaluate_learning_rate(learning_rate) *
            tf.sqrt(1.0 - tf.pow(beta_2, t)) / (1.0 - tf.pow(beta_1, t)))

  return corrected


def _clip(values: tf.Tensor, lower: Optional[float],
          upper: Optional[float]) -> tf.Tensor:
  """Clips `values` to the bounds that are not None."""
  if lower is not None:
    values = tf.maximum(values, lower)
  if upper is not None:
    values = tf.minimum(values, upper)
  return values


def _decay_weights(optimizer, params: tf.Tensor, lr: tf.Tensor) -> tf.Tensor:
  """Applies the optimizer's decoupled weight decay to `params`."""
  if not optimizer.weight_decay_factor:
    return params
  factor = tf.constant(optimizer.weight_decay_factor, tf.float32)
  if optimizer.multiply_weight_decay_factor_by_learning_rate:
    factor = factor * lr
  return params - factor * params


def update_rows(optimizer, params: tf.Tensor, slots: Mapping[str, tf.Tensor],
                grads: tf.Tensor, lr: tf.Tensor) -> RuleResult:
  """Returns the new rows after one step of `optimizer` (steps 2 to 5 above).

  A pure function of tensors: `params`, each slot and `grads` hold the same
  rows, with the gradients already summed per row.

  Args:
    optimizer: a `tf.tpu.experimental.embedding` optimizer.
    params: the rows of the table, `[n, dim]`.
    slots: the same rows of each slot variable, keyed by slot name.
    grads: the summed gradients of those rows, `[n, dim]`.
    lr: the learning rate, a float32 scalar.

  Returns:
    The new rows of the table and of each slot.
  """
  rule, _ = _lookup_rule(optimizer)
  grads = _clip(grads, optimizer.clip_gradient_min, optimizer.clip_gradient_max)
  params = _decay_weights(optimizer, params, lr)
  params, new_slots = rule(optimizer, params, slots, grads, lr)
  params = _clip(params, optimizer.clip_weight_min, optimizer.clip_weight_max)
  return params, new_slots


def is_dense(optimizer) -> bool:
  """Whether `optimizer` updates every row on every step (non-lazy Adam)."""
  return isinstance(optimizer, _embedding.Adam) and not optimizer.lazy_adam


# Gradient ops whose second output holds sorted, distinct row ids: the
# gradients of `SparseSegmentSum/Mean/SqrtN` with `sparse_gradient=True`, and
# of the native bag lookup, as `bag_lookup` builds them.
_DISTINCT_ROW_GRADIENT_OPS = frozenset({
    'SparseSegmentSumGradV2', 'SparseSegmentMeanGradV2',
    'SparseSegmentSqrtNGradV2', 'EmbeddingRowsBagReduceGrad'})


def has_distinct_rows(gradient: tf.IndexedSlices) -> bool:
  """Whether the graph shows that `gradient`'s row ids are already distinct.

  True only inside a trace, for a gradient that comes straight from one
  fused bag lookup; a table looked up several times gets the concatenation of
  their gradients (duplicates possible), and eager tensors show no producer.
  """
  indices = gradient.indices
  if tf.executing_eagerly() or not hasattr(indices, 'op'):
    return False
  return (indices.op.type in _DISTINCT_ROW_GRADIENT_OPS and
          indices.value_index == 1)


def sum_duplicates(
    gradient: tf.IndexedSlices) -> Tuple[tf.Tensor, tf.Tensor]:
  """Returns the distinct row ids of `gradient` and their summed gradients.

  A gradient whose rows are already distinct (`has_distinct_rows`) is
  returned as it is: summing would cost a `Unique` and a segment sum over
  the batch's rows for nothing.
  """
  if has_distinct_rows(gradient):
    return gradient.indices, gradient.values
  ids, positions = tf.unique(gradient.indices)
  grads = tf.math.unsorted_segment_sum(gradient.values, positions,
                                       tf.shape(ids)[0])
  return ids, grads


def _fused_sgd(optimizer, table: tf.Variable,
               slots: Mapping[str, tf.Variable], ids: tf.Tensor,
               grads: tf.Tensor, lr: tf.Tensor) -> None:
  """`w = w - lr * g` on the distinct rows, in one scatter op."""
  del optimizer, slots
  table.scatter_sub(tf.IndexedSlices(lr * grads, ids))


def _fused_adagrad(optimizer, table: tf.Variable,
                   slots: Mapping[str, tf.Variable], ids: tf.Tensor,
                   grads: tf.Tensor, lr: tf.Tensor) -> None:
  """TensorFlow's sparse Adagrad kernel on the distinct rows.

  `ResourceSparseApplyAdagrad` computes `accum += g * g;
  w -= lr * g * rsqrt(accum)` row by row: the TPU's rule (no epsilon) once the
  duplicates are summed, which the caller has done (the kernel alone would
  apply each duplicate in turn).
  """
  del optimizer
  tf.raw_ops.ResourceSparseApplyAdagrad(
      var=table.handle, accum=slots['accumulators'].handle, lr=lr, grad=grads,
      indices=ids, use_locking=False, update_slots=True)


def _fused_lazy_adam(optimizer, table: tf.Variable,
                     slots: Mapping[str, tf.Variable], ids: tf.Tensor,
                     grads: tf.Tensor, lr: tf.Tensor) -> None:
  """Lazy Adam on the distinct rows; the weights move by one `scatter_sub`.

  The same ops in the same order as `update_rows` (`w - step`, the step
  from `_adam_step`), without reading the weights: only the two moments are
  gathered and written back.
  """
  rows = {name: tf.gather(var, ids) for name, var in slots.items()}
  step, new_rows = _adam_step(optimizer, rows, grads, lr)
  table.scatter_sub(tf.IndexedSlices(step, ids))
  for name, values in new_rows.items():
    slots[name].scatter_update(tf.IndexedSlices(values, ids))


_FusedKernel = Callable[..., None]
# Only sparse (lazy) Adam comes to these; `apply_dense` has the other.
_FUSED: Dict[type, _FusedKernel] = {
    _embedding.SGD: _fused_sgd,
    _embedding.Adagrad: _fused_adagrad,
    _embedding.Adam: _fused_lazy_adam,
}


def _native_kernel(apply: Callable[..., Any], slot_names: Tuple[str, ...],
                   takes_optimizer: bool) -> _FusedKernel:
  """A fused kernel calling `native_kernels`' `apply` (which documents its
  rule) with the table, then the slots `slot_names` in that order."""

  def kernel(optimizer, table: tf.Variable, slots: Mapping[str, tf.Variable],
             ids: tf.Tensor, grads: tf.Tensor, lr: tf.Tensor,
             positions: Optional[tf.Tensor] = None) -> None:
    leading = (optimizer,) if takes_optimizer else ()
    apply(*leading, table, *(slots[name] for name in slot_names), ids, grads,
          lr, positions)

  return kernel


# The rules of `update_rows`, in the prefetching kernels.
_NATIVE: Dict[type, _FusedKernel] = {
    _embedding.SGD: _native_kernel(native_kernels.apply_sgd, (), False),
    _embedding.Adagrad: _native_kernel(native_kernels.apply_adagrad,
                                       ('accumulators',), False),
    _embedding.Adam: _native_kernel(native_kernels.apply_lazy_adam,
                                    ('momenta', 'velocities'), True),
    _embedding.FTRL: _native_kernel(native_kernels.apply_ftrl,
                                    ('accumulators', 'linears'), True),
    _embedding.AdagradMomentum: _native_kernel(
        native_kernels.apply_adagrad_momentum, ('accumulators', 'momenta'),
        True),
}


def fused_kernel(optimizer, native: bool = False) -> Optional[_FusedKernel]:
  """A fused update equal to `update_rows` for `optimizer`, or None.

  TensorFlow's kernels for SGD and Adagrad, and lazy Adam with the weights
  updated in place; with `native` (the caller has checked
  `native_kernels.usable_for`), the prefetching kernels of `native_kernels`
  for the same three, FTRL and Adagrad with momentum (equal up to float
  rounding: TensorFlow's `Pow` and `Rsqrt` and the C library's may differ
  in the last bit). Not with the options these lack:
  weight decay and weight clipping. Gradient clipping is applied before the
  kernel, as in `update_rows`.
  """
  if optimizer.weight_decay_factor or (
      optimizer.clip_weight_min is not None or
      optimizer.clip_weight_max is not None):
    return None
  return (_NATIVE if native else _FUSED).get(type(optimizer))


def kernel_gradient(optimizer,
                    gradient: tf.IndexedSlices) -> Tuple[tf.Tensor, tf.Tensor]:
  """The distinct ids and summed, clipped gradients a fused kernel takes.

  A fused kernel applied to any subsets of these rows, one after the other,
  gives what it gives applied to all of them at once: each row's update
  reads and writes that row only.
  """
  ids, grads = sum_duplicates(gradient)
  return ids, _clip(grads, optimizer.clip_gradient_min,
                    optimizer.clip_gradient_max)


def apply_sparse(optimizer, table: tf.Variable, slots: Mapping[str,
                                                               tf.Variable],
                 gradient: tf.IndexedSlices, lr: tf.Tensor,
                 use_fused_kernels: bool = True,
                 use_native_kernels: bool = False) -> None:
  """Updates only the rows of `table` and `slots` that `gradient` touches.

  Args:
    optimizer: a `tf.tpu.experimental.embedding` optimizer.
    table: the embedding table, `[vocabulary_size, dim]`.
    slots: its slot variables, keyed by slot name.
    gradient: the table's gradient; duplicate ids are summed first.
    lr: the learning rate, a float32 scalar.
    use_fused_kernels: whether to use TensorFlow's fused kernel where one
      computes exactly this rule (`fused_kernel`); False always gathers the
      rows, applies `update_rows` and scatters them back (the reference).
    use_native_kernels: whether the fused kernel may be `native_kernels`'
      (where they are built, for a table on a CPU).
  """
  native = use_native_kernels and native_kernels.usable_for(table)
  kernel = fused_kernel(optimizer, native) if use_fused_kernels else None
  if kernel is not None:
    kernel(optimizer, table, slots, *kernel_gradient(optimizer, gradient), lr)
    return
  ids, grads = sum_duplicates(gradient)
  params = tf.gather(table, ids)
  slot_rows = {name: tf.gather(var, ids) for name, var in slots.items()}
  params, slot_rows = update_rows(optimizer, params, slot_rows, grads, lr)
  table.scatter_update(tf.IndexedSlices(params, ids))
  for name, rows in slot_rows.items():
    slots[name].scatter_update(tf.IndexedSlices(rows, ids))


def apply_dense(optimizer, table: tf.Variable, slots: Mapping[str,
                                                              tf.Variable],
                gradient: Optional[tf.IndexedSlices], lr: tf.Tensor) -> None:
  """Updates every row of `table` and `slots` (untouched rows: zero gradient).

  Args:
    optimizer: a `tf.tpu.experimental.embedding` optimizer.
    table: the embedding table, `[vocabulary_size, dim]`.
    slots: its slot variables, keyed by slot name.
    gradient: the table's gradient, or None when no row was looked up.
    lr: the learning rate, a float32 scalar.
  """
  grads = tf.zeros_like(table)
  if gradient is not None:
    ids, summed = sum_duplicates(gradient)
    grads = tf.tensor_scatter_nd_add(grads, tf.expand_dims(ids, 1), summed)
  slot_values = {name: var.read_value() for name, var in slots.items()}
  params, slot_values = update_rows(optimizer, table.read_value(), slot_values,
                                    grads, lr)
  table.assign(params)
  for name, values in slot_values.items():
    slots[name].assign(values)
