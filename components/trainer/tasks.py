"""What the model predicts: the loss, metrics and serving outputs of a task.

A task turns the transformed label into the tensor the loss takes, computes a
per-example loss from the model's outputs, keeps the evaluation metrics and
names the serving outputs. The training loop, every backend and the serving
export call the same ``Task``, so the CPU and TPU paths and serving agree.

Kinds (``TaskConfig.kind``):

* ``binary``: the model returns one logit ``[batch, 1]``; labels 0/1.
  Sigmoid cross-entropy; metrics ``auc``, ``log_loss``, ``accuracy``;
  serving output ``probabilities`` ``[batch, 1]``.
* ``multiclass``: ``num_classes`` logits ``[batch, num_classes]``; labels are
  class ids in ``[0, num_classes)``. Softmax cross-entropy; metrics
  ``accuracy``, ``top_k_accuracy`` (``top_k``), ``log_loss``; serving outputs
  ``probabilities`` ``[batch, num_classes]`` and ``classes`` ``[batch]``.
* ``regression``: one output ``[batch, 1]``; a float label. Squared error;
  metrics ``mse``, ``mae``, ``rmse``; serving output ``predictions``
  ``[batch, 1]``.
* ``custom``: the user's ``loss_fn(labels, outputs) -> [batch]`` and
  ``metrics_fn() -> {name: tf_keras.metrics.Metric}`` (updated with
  ``(labels, outputs)``), both by dotted path; labels are float32
  ``[batch, 1]``, or int64 ``[batch]`` with ``integer_labels``; serving output
  ``outputs`` (the model's outputs as they are).

Every metric dict also holds ``examples``, the number of evaluated examples.
"""

import dataclasses
import importlib
import math
from typing import Any, Callable, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

KINDS = ('binary', 'multiclass', 'regression', 'custom')


def import_by_path(dotted_path: str) -> Callable[..., Any]:
  """Imports ``package.module.name``; errors say what was not found."""
  module_name, _, name = dotted_path.rpartition('.')
  if not module_name:
    raise ValueError(f'{dotted_path!r} is not a dotted path such as '
                     '"my_package.module.function".')
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f'Cannot import module {module_name!r} of '
                     f'{dotted_path!r}: {e}') from e
  if not hasattr(module, name):
    raise ValueError(f'Module {module_name!r} has no {name!r} '
                     f'(from {dotted_path!r}).')
  return getattr(module, name)


@dataclasses.dataclass
class TaskConfig:
  """Which task the model is trained for; JSON scalars only.

  Attributes:
    kind: 'binary', 'multiclass', 'regression' or 'custom'.
    num_classes: with 'multiclass': the number of classes (>= 2).
    top_k: with 'multiclass': k of the top-k accuracy.
    loss_fn: with 'custom': dotted path of ``fn(labels, outputs) -> [batch]``.
    metrics_fn: with 'custom': dotted path of ``fn() -> {name: Metric}``.
    integer_labels: with 'custom': labels as int64 ``[batch]`` instead of
      float32 ``[batch, 1]``.
  """

  kind: str = 'binary'
  num_classes: Optional[int] = None
  top_k: int = 5
  loss_fn: Optional[str] = None
  metrics_fn: Optional[str] = None
  integer_labels: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'TaskConfig.kind must be one of {KINDS}, got '
                       f'{self.kind!r}.')
    if self.kind == 'multiclass':
      if (isinstance(self.num_classes, bool) or
          not isinstance(self.num_classes, int) or self.num_classes < 2):
        raise ValueError('TaskConfig.num_classes must be an int >= 2 for a '
                         f'multiclass task, got {self.num_classes!r}.')
      if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or (
          not 1 <= self.top_k <= self.num_classes):
        raise ValueError(f'TaskConfig.top_k must be an int in [1, '
                         f'num_classes={self.num_classes}], got '
                         f'{self.top_k!r}.')
    elif self.num_classes is not None:
      raise ValueError(f'TaskConfig.num_classes is for multiclass tasks, not '
                       f'{self.kind!r}.')
    if self.kind == 'custom':
      if not self.loss_fn or '.' not in self.loss_fn:
        raise ValueError('A custom task needs TaskConfig.loss_fn, the dotted '
                         'path of fn(labels, outputs) -> per-example loss.')
    elif self.loss_fn or self.metrics_fn:
      raise ValueError('TaskConfig.loss_fn and metrics_fn are for '
                       f"kind='custom', not {self.kind!r}.")


class Task:
  """Loss, metrics and serving outputs of one ``TaskConfig``."""

  def __init__(self, config: TaskConfig):
    self.config = config
    self._custom_loss = (import_by_path(config.loss_fn)
                         if config.loss_fn else None)
    self._custom_metrics = (import_by_path(config.metrics_fn)
                            if config.metrics_fn else None)

  @property
  def kind(self) -> str:
    return self.config.kind

  @property
  def output_size(self) -> int:
    """Width of the model's output the task expects (custom: unchecked)."""
    return self.config.num_classes if self.kind == 'multiclass' else 1

  @property
  def integer_labels(self) -> bool:
    return self.kind == 'multiclass' or (self.kind == 'custom' and
                                         self.config.integer_labels)

  def labels(self, label: tf.Tensor) -> tf.Tensor:
    """The transformed label as the loss takes it."""
    if self.integer_labels:
      return tf.reshape(tf.cast(label, tf.int64), [-1])
    return tf.reshape(tf.cast(label, tf.float32), [-1, 1])

  def per_example_loss(self, labels: tf.Tensor,
                       outputs: tf.Tensor) -> tf.Tensor:
    """Loss of each example, shape ``[batch]``; the loop takes its mean."""
    if self.kind == 'binary':
      loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels,
                                                     logits=outputs)
    elif self.kind == 'multiclass':
      loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                            logits=outputs)
    elif self.kind == 'regression':
      loss = tf.math.squared_difference(outputs, labels)
    else:
      loss = self._custom_loss(labels, outputs)
    return tf.reshape(loss, [-1])

  def serving_outputs(self, outputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The serving signature's outputs, from the model's outputs."""
    if self.kind == 'binary':
      return {'probabilities': tf.sigmoid(outputs)}
    if self.kind == 'multiclass':
      return {'probabilities': tf.nn.softmax(outputs),
              'classes': tf.argmax(outputs, axis=-1)}
    if self.kind == 'regression':
      return {'predictions': outputs}
    return {'outputs': outputs}

  def check_outputs(self, outputs: tf.Tensor) -> None:
    """Refuses a model whose output width does not fit the task."""
    if self.kind == 'custom':
      return
    width = outputs.shape[-1]
    if outputs.shape.rank != 2 or width != self.output_size:
      raise ValueError(
          f'The model returns outputs of shape {outputs.shape}; a '
          f'{self.kind} task needs [batch, {self.output_size}]. Change the '
          "model_fn's last layer.")

  def metrics(self) -> 'TaskMetrics':
    """Fresh evaluation metrics."""
    return TaskMetrics(self, self._make_metrics())

  def _make_metrics(self) -> Dict[str, Any]:
    if self.kind == 'binary':
      return {'auc': tf_keras.metrics.AUC(num_thresholds=2000),
              'log_loss': tf_keras.metrics.BinaryCrossentropy(),
              'accuracy': tf_keras.metrics.BinaryAccuracy()}
    if self.kind == 'multiclass':
      return {'accuracy': tf_keras.metrics.SparseCategoricalAccuracy(),
              'top_k_accuracy': tf_keras.metrics.SparseTopKCategoricalAccuracy(
                  k=self.config.top_k),
              'log_loss': tf_keras.metrics.SparseCategoricalCrossentropy()}
    if self.kind == 'regression':
      return {'mse': tf_keras.metrics.MeanSquaredError(),
              'mae': tf_keras.metrics.MeanAbsoluteError(),
              'rmse': tf_keras.metrics.RootMeanSquaredError()}
    return dict(self._custom_metrics()) if self._custom_metrics else {}

  def metric_inputs(self, outputs: tf.Tensor) -> tf.Tensor:
    """What the built-in metrics compare with the labels."""
    if self.kind == 'binary':
      return tf.sigmoid(outputs)
    if self.kind == 'multiclass':
      return tf.nn.softmax(outputs)
    return outputs


class TaskMetrics:
  """Evaluation metrics of a task, updated batch by batch."""

  def __init__(self, task: Task, metrics: Mapping[str, Any]):
    self._task = task
    self._metrics = dict(metrics)
    self.examples = 0

  def update(self, labels: tf.Tensor, outputs: tf.Tensor) -> None:
    predictions = self._task.metric_inputs(outputs)
    for metric in self._metrics.values():
      metric.update_state(labels, predictions)
    self.examples += int(labels.shape[0])

  def result(self) -> Dict[str, float]:
    values = {name: float(metric.result())
              for name, metric in self._metrics.items()}
    values['examples'] = float(self.examples)
    return values


def headline_metric(metrics: Mapping[str, float]) -> str:
  """The metric a person reads first, formatted (the first one)."""
  for name, value in metrics.items():
    if name != 'examples' and not math.isnan(value):
      return f'{name} {value:.4f}'
  return 'no metric'
