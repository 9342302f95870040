"""Label checks before training: every split has examples and valid labels.

One pass over the label column of each split (only the label is parsed)
counts the examples and the label values, and refuses, naming the split:

* an empty split;
* a binary label other than 0/1, or a training or evaluation split with one
  class only (AUC is undefined, the model learns a constant);
* a multiclass label outside ``[0, num_classes)`` or a training split with
  one class only;
* a non-finite label (NaN, inf) for any task.

A model trained on such data would report success with garbage metrics.
"""

import dataclasses
from typing import Any, Dict, List, Mapping

import numpy as np
import tensorflow as tf

from components.trainer import tasks


class LabelError(ValueError):
  """A split's labels cannot train or evaluate the task."""


@dataclasses.dataclass
class LabelSummary:
  """What one split's labels hold."""

  examples: int
  non_finite: int
  minimum: float
  maximum: float
  # Counts per class for integer-valued labels (binary and multiclass).
  classes: Dict[int, int]


def summarize_labels(files: List[str], label_key: str,
                     label_spec: Any, batch_size: int = 4096) -> LabelSummary:
  """Counts the labels of gzipped TFRecords of transformed examples."""
  spec = {label_key: label_spec}
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP').batch(
      batch_size).map(lambda s: tf.io.parse_example(s, spec)[label_key])
  values = [np.asarray(batch, dtype=np.float64).reshape(-1)
            for batch in dataset.as_numpy_iterator()]
  labels = np.concatenate(values) if values else np.zeros([0])
  finite = labels[np.isfinite(labels)]
  integral = finite[finite == np.round(finite)]
  classes, counts = np.unique(integral.astype(np.int64), return_counts=True)
  return LabelSummary(
      examples=int(labels.size),
      non_finite=int(labels.size - finite.size),
      minimum=float(finite.min()) if finite.size else float('nan'),
      maximum=float(finite.max()) if finite.size else float('nan'),
      classes={int(c): int(n) for c, n in zip(classes, counts)})


def check_split(split: str, summary: LabelSummary,
                task_config: tasks.TaskConfig, training: bool) -> None:
  """Raises ``LabelError`` naming ``split`` when its labels are unusable."""
  if not summary.examples:
    raise LabelError(f'The {split!r} split has no examples; check the '
                     'ExampleGen output and train_args/eval_args splits.')
  if summary.non_finite:
    raise LabelError(f'The {split!r} split has {summary.non_finite} '
                     'non-finite labels (NaN or inf); drop or fix those rows '
                     'in preprocessing.')
  kind = task_config.kind
  if kind == 'binary':
    _check_classes(split, summary, {0, 1}, 'binary labels must be 0 or 1')
    if len(summary.classes) < 2:
      raise LabelError(f'The {split!r} split has only label '
                       f'{sorted(summary.classes)}: a binary task needs both '
                       'classes in every split (AUC is undefined otherwise).')
  elif kind == 'multiclass':
    valid = set(range(task_config.num_classes))
    _check_classes(split, summary, valid,
                   f'class ids must be in [0, {task_config.num_classes})')
    if training and len(summary.classes) < 2:
      raise LabelError(f'The {split!r} split has only class '
                       f'{sorted(summary.classes)}: nothing to learn.')


def _check_classes(split: str, summary: LabelSummary, valid: set,
                   rule: str) -> None:
  integral = sum(summary.classes.values())
  invalid = sorted(set(summary.classes) - valid)
  if invalid or integral != summary.examples:
    shown = invalid[:5] or [summary.minimum, summary.maximum]
    raise LabelError(f'The {split!r} split has invalid labels (e.g. '
                     f'{shown}): {rule}. Fix the label in preprocessing_fn '
                     'or the task in TrainingConfig.task.')


def check_labels(split_files: Mapping[str, List[str]], train_splits: List[str],
                 label_key: str, feature_spec: Mapping[str, Any],
                 task_config: tasks.TaskConfig) -> Dict[str, LabelSummary]:
  """Checks every split's labels; returns their summaries by split."""
  if label_key not in feature_spec:
    raise LabelError(f'The label {label_key!r} is not a transformed feature; '
                     f'they are {sorted(feature_spec)}.')
  summaries = {}
  for split, files in split_files.items():
    summary = summarize_labels(files, label_key, feature_spec[label_key])
    check_split(split, summary, task_config, training=split in train_splits)
    summaries[split] = summary
  return summaries
