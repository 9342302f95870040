"""Training health: a mean loss, per-table figures and warnings, OOV rows.

What the training loop reports beyond one batch's loss, and what runs once
after the last step:

* **Mean loss**: the loss of every step is added to host variables; each
  progress line (every ``log_every`` steps) shows and logs to TensorBoard the
  mean since the previous line (a windowed mean), not one batch's.
* **Touched rows**: a ``[rows]`` int8 bitmap per table on the host, set from
  the ids of every batch a step consumes (the iterator handed to the step is
  wrapped, so exactly the trained batches are recorded). It is checkpointed,
  so a resumed run keeps it. Ids below 0 (ignored by the lookup) are skipped.
* **Table figures** (``table_figures``), every ``log_every`` steps on the
  CPU/GPU path for tables of at most ``MAX_PERIODIC_VALUES`` floats (reading
  a larger table each time would cost more than the steps), and at the end
  for every table on both paths:
  ``touched_share`` the share of rows some batch looked up;
  ``moved`` the mean L2 distance of touched rows from their initial values,
  divided by the mean initial row norm (0: the table did not learn; about 1:
  the rows moved as far as their own length);
  ``norm_p10/p50/p90`` quantiles of the row norms of all rows, and
  ``initial_mean_norm``. The initial values are copied once at the start:
  the whole table when it has at most ``MAX_COPIED_VALUES`` floats, else a
  fixed random sample of ``SAMPLED_ROWS`` rows (``moved`` is then measured on
  the touched rows of the sample; ``sampled_rows`` says how many rows the
  copy holds). The copy is checkpointed as well.
* **Warnings** (absl WARNING, shown by the local runner): a table whose
  ``moved`` is below ``TrainingConfig.min_table_movement`` at the end barely
  learned (raise its learning rate); the embedding statistics' split
  warnings are repeated when training starts (``log_statistics_warnings``).
* **OOV rows after training**: tables with ``oov_rows='mean_after_training'``
  get their untouched OOV rows set to the mean of their touched rows
  (``oov.set_untouched_rows_to_mean``), once, after the last step and before
  evaluation and export.

What runs where. CPU/GPU: the tables are host variables; figures are read and
OOV rows set on them directly. TPU: the bitmap and the loss window are host
variables updated by the same step function (outside ``strategy.run``), but
the tables live on the TPU and cannot be read during training, so the figures
are computed at the end only, on a host copy restored from the final
checkpoint (``moved`` is not available there: no initial copy is taken on
TPU). The OOV rows are set on that host copy (the code of the CPU path),
which is saved and restored into the TPU engine, so evaluation and the
exported model (which reads the final checkpoint) both see them. The TPU
route has not been run here (no TPU); it relies on the checkpoint layout being
shared by the CPU path and the TPU engine, as the export does.
"""

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from components.embedding import cpu_embedding
from components.embedding import oov

MAX_COPIED_VALUES = 1 << 20  # 4 MiB of float32 per table.
# Tables read every log_every steps; larger ones only at the end.
MAX_PERIODIC_VALUES = 1 << 24  # 64 MiB of float32.
SAMPLED_ROWS = 4096
QUANTILES = (10, 50, 90)
HOST_COPY_DIR = 'oov_rows_host_copy'


def log_statistics_warnings(statistics: Optional[Any]) -> List[str]:
  """Repeats the embedding statistics' split warnings; returns their text."""
  messages = [w.message for w in getattr(statistics, 'warnings', None) or []]
  for message in messages:
    logging.warning('Embedding statistics: %s', message)
  return messages


def _id_values(value: Any) -> List[tf.Tensor]:
  """The flat ids of one feature's batch (every replica's, on TPU)."""
  if isinstance(value, tf.distribute.DistributedValues):
    parts = tf.distribute.get_strategy().experimental_local_results(value)
    return [v for part in parts for v in _id_values(part)]
  if isinstance(value, tf.RaggedTensor):
    return [value.flat_values]
  if isinstance(value, tf.SparseTensor):
    return [value.values]
  return [tf.reshape(value, [-1])]


def table_figures(values: np.ndarray, touched: np.ndarray,
                  initial_rows: Optional[np.ndarray] = None,
                  initial_values: Optional[np.ndarray] = None
                 ) -> Dict[str, Any]:
  """The health figures of one table (see the module docstring).

  Args:
    values: the table now, ``[rows, dim]``.
    touched: ``[rows]``, nonzero for rows training looked up.
    initial_rows: indices of the rows whose initial values were copied.
    initial_values: those rows' initial values.
  """
  touched = np.asarray(touched) != 0
  norms = np.linalg.norm(values, axis=1)
  p10, p50, p90 = np.percentile(norms, QUANTILES)
  figures = {'rows': int(values.shape[0]),
             'touched_share': float(touched.mean()),
             'norm_p10': float(p10), 'norm_p50': float(p50),
             'norm_p90': float(p90), 'moved': None,
             'initial_mean_norm': None, 'sampled_rows': 0}
  if initial_rows is None or not len(initial_rows):
    return figures
  initial_norm = float(np.linalg.norm(initial_values, axis=1).mean())
  figures.update(initial_mean_norm=initial_norm,
                 sampled_rows=int(len(initial_rows)))
  moving = touched[initial_rows]
  if moving.any() and initial_norm > 0:
    distance = np.linalg.norm(
        values[initial_rows[moving]] - initial_values[moving], axis=1)
    figures['moved'] = float(distance.mean() / initial_norm)
  return figures


def copied_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
  """The rows whose initial values are kept: all, or a fixed sample."""
  if rows * dim <= MAX_COPIED_VALUES or rows <= SAMPLED_ROWS:
    return np.arange(rows)
  return np.sort(np.random.default_rng(seed).choice(
      rows, SAMPLED_ROWS, replace=False))


class _RecordingIterator:
  """Hands the step the batches of ``iterator``, recording their ids."""

  def __init__(self, iterator: Any, record: Any):
    self._iterator, self._record = iterator, record

  def __iter__(self) -> Iterator[Any]:
    return self

  def __next__(self) -> Any:
    batch = next(self._iterator)
    self._record(batch[0])
    return batch


class TrainingHealth(tf.Module):
  """The loop's health state: touched rows, initial copies, the loss window.

  A ``tf.Module``: put it in the training checkpoint so that a resumed run
  keeps what it measured.
  """

  def __init__(self, resolved_spec: Any, backend_name: str,
               min_table_movement: float = 0.0):
    super().__init__(name='training_health')
    self._spec = resolved_spec
    self._on_tpu = backend_name != 'cpu'
    self._min_movement = min_table_movement
    self._table_of = {k: f.table_name for k, f in resolved_spec.features.items()}
    self._keys = {name: f'table_{index}'
                  for index, name in enumerate(resolved_spec.tables)}
    with tf.device('/cpu:0'):
      self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
      self.loss_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.touched = {
          self._keys[t.name]: tf.Variable(
              tf.zeros([t.vocabulary_size], tf.int8), trainable=False)
          for t in resolved_spec.tables.values()}
      self.initial_rows, self.initial_values = {}, {}
      if not self._on_tpu:
        for index, table in enumerate(resolved_spec.tables.values()):
          rows = copied_rows(table.vocabulary_size, table.dimension, index)
          key = self._keys[table.name]
          self.initial_rows[key] = tf.Variable(rows, trainable=False)
          self.initial_values[key] = tf.Variable(
              tf.zeros([len(rows), table.dimension]), trainable=False)

  # --- During training. ---

  def recording(self, iterator: Any) -> _RecordingIterator:
    """``iterator`` for the step function, with the ids recorded."""
    return _RecordingIterator(iterator, self.record_ids)

  def record_ids(self, ids: Mapping[str, Any]) -> None:
    """Marks the rows ``ids`` look up (traced into the step function)."""
    with tf.device('/cpu:0'):
      for key, value in ids.items():
        bitmap = self.touched[self._keys[self._table_of[key]]]
        for flat in _id_values(value):
          flat = tf.cast(flat, tf.int64)
          flat = tf.boolean_mask(flat, flat >= 0)
          bitmap.scatter_update(tf.IndexedSlices(
              tf.ones_like(flat, tf.int8), flat))

  def copy_initial_values(self, tables: Optional[Mapping[str, Any]]) -> None:
    """Keeps the initial rows (call at the start of a fresh run)."""
    for name, values in (tables or {}).items():
      key = self._keys[name]
      if key in self.initial_rows:
        rows = self.initial_rows[key].numpy()
        self.initial_values[key].assign(tf.gather(values, rows))

  def add_loss(self, loss: Any) -> None:
    """Adds one step's loss to the window (no device sync)."""
    self.loss_sum.assign_add(tf.cast(loss, tf.float64))
    self.loss_steps.assign_add(1)

  def take_mean_loss(self) -> float:
    """The mean loss since the last call; starts a new window."""
    steps = int(self.loss_steps.numpy())
    mean = float(self.loss_sum.numpy()) / steps if steps else float('nan')
    self.loss_sum.assign(0.0)
    self.loss_steps.assign(0)
    return mean

  def figures(self, tables: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """``table_figures`` of every table in ``tables`` ({name: variable})."""
    result = {}
    for name, variable in tables.items():
      key = self._keys[name]
      rows = values = None
      if key in self.initial_rows:
        rows = self.initial_rows[key].numpy()
        values = self.initial_values[key].numpy()
      result[name] = table_figures(np.asarray(variable.numpy()),
                                   self.touched[key].numpy(), rows, values)
    return result

  def write_figures(self, figures: Mapping[str, Mapping[str, Any]],
                    writer: Any, step: int) -> None:
    """TensorBoard scalars ``health/<table>/<figure>``."""
    with writer.as_default(step=step):
      for table, values in figures.items():
        for name, value in values.items():
          if value is not None and name != 'rows':
            tf.summary.scalar(f'health/{table}/{name}', value)

  # --- After the last step. ---

  def warn_still_tables(self, figures: Mapping[str, Mapping[str, Any]]
                       ) -> List[str]:
    """Warns for each table whose rows barely moved; returns the messages."""
    messages = []
    for table, values in figures.items():
      moved = values.get('moved')
      if moved is not None and moved < self._min_movement:
        messages.append(
            f'Table {table!r} barely moved: its touched rows are on average '
            f'{moved:.3f} of their initial norm away from their initial '
            f'values (threshold {self._min_movement}). Raise its learning '
            'rate (learning_rate_fn or the optimizer\'s); see '
            'docs/tuning_embeddings.md.')
    for message in messages:
      logging.warning('%s', message)
    return messages

  def set_oov_rows(self, tables: Mapping[str, Any]) -> Dict[str, int]:
    """Applies ``mean_after_training`` to ``tables``; rows set per table."""
    result = {}
    for table in self._spec.tables.values():
      if table.oov_rows == oov.MEAN_AFTER_TRAINING and table.num_oov_rows:
        result[table.name] = oov.set_untouched_rows_to_mean(
            tables[table.name], table.first_oov_row,
            self.touched[self._keys[table.name]].numpy())
        logging.info('Table %r: %d untouched OOV rows set to the mean of the '
                     'touched rows.', table.name, result[table.name])
    return result

  def after_training(self, embedding: Any, checkpoint_path: str,
                     run_dir: str, writer: Any, step: int) -> Dict[str, Any]:
    """Final figures, warnings and OOV rows; see the module docstring.

    Args:
      embedding: the backend's embedding object (its tables are set in place
        on the CPU path; restored from the host copy on TPU).
      checkpoint_path: the final checkpoint (the TPU path reads it).
      run_dir: where the TPU path writes the host copy.
      writer: the training TensorBoard writer.
      step: the final step.

    Returns:
      ``{'tables': figures, 'warnings': [...], 'oov_rows_set': {...},
      'tables_changed': bool}``; the caller saves a new final checkpoint
      when ``tables_changed``.
    """
    host = embedding if not self._on_tpu else self._host_copy(
        checkpoint_path)
    tables = {t.name: v for t, v in host.embedding_tables.items()}
    figures = self.figures(tables)
    self.write_figures(figures, writer, step)
    warnings = self.warn_still_tables(figures)
    oov_set = self.set_oov_rows(tables)
    changed = any(oov_set.values())
    if changed and self._on_tpu:
      path = tf.train.Checkpoint(embedding=host).save(
          os.path.join(run_dir, HOST_COPY_DIR, 'tables'))
      tf.train.Checkpoint(embedding=embedding).restore(path).expect_partial()
    return {'tables': figures, 'warnings': warnings, 'oov_rows_set': oov_set,
            'tables_changed': changed}

  def _host_copy(self, checkpoint_path: str) -> Any:
    """The tables and slots of ``checkpoint_path`` in host variables."""
    step = tf.Variable(0, dtype=tf.int64)
    host = cpu_embedding.CpuEmbedding(self._spec.compile(step),
                                      self._spec.compile_optimizer(step))
    tf.train.Checkpoint(embedding=host).restore(
        checkpoint_path).expect_partial()
    return host

  def live_tables(self, embedding: Any, periodic: bool = False
                 ) -> Optional[Dict[str, Any]]:
    """The tables readable now: the CPU path's variables; None on TPU.

    With ``periodic``, only those small enough to read every log_every steps.
    """
    if self._on_tpu:
      return None
    return {t.name: v for t, v in embedding.embedding_tables.items()
            if not periodic or t.vocabulary_size * t.dim <= MAX_PERIODIC_VALUES}
