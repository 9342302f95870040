"""Sparse updates of large tables, written while the next step computes.

On a CPU, a step's sparse update of a large table is mostly memory traffic:
its rows and their slots are not in any cache, and the dense model waits for
them before the next step can start. Here the update of step t is kept
pending instead, as the distinct ids, their summed and clipped gradients and
the learning rate of step t. Step t+1 then

1. applies the pending rows that its own batch looks up (`apply_read_by`),
   before its lookups read them;
2. looks its batch up;
3. applies the other pending rows (`apply_rest`) once its lookups are done,
   while the dense model runs: no lookup of step t+1 reads them.

Every row is written before it is next read, with the values the immediate
update gives: each row's update reads and writes that row only, so applying
the rows in two parts changes nothing (`tpu_update_rules.kernel_gradient`).
`flush` applies what is still pending; the training function calls it after
its last step, so checkpoints, evaluation and export see applied tables.

Only tables of at least `MIN_TABLE_BYTES` are deferred: smaller ones stay in
the caches, and their update is cheap already.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional

import tensorflow as tf

from components.embedding import native_kernels

# About where a table and its slot stop fitting the caches of a CPU.
MIN_TABLE_BYTES = 16 << 20

# apply_rows(table_config, ids, grads, lr, positions): the table's native
# update of the rows at `positions` (None: all) of `ids` and `grads`.
ApplyRows = Callable[
    [Any, tf.Tensor, tf.Tensor, tf.Tensor, Optional[tf.Tensor]], None]


@dataclasses.dataclass
class PendingRows:
  """One table's pending update: distinct ids in increasing order, their
  gradients and the learning rate of the step that computed them; of these,
  the rows at `positions` (None: all) are still to apply."""
  ids: tf.Tensor
  grads: tf.Tensor
  lr: tf.Tensor
  positions: Optional[tf.Tensor] = None

  def select(self, positions: tf.Tensor) -> 'PendingRows':
    return dataclasses.replace(self, positions=positions)


class _PendingVariables:
  """One table's pending update, held between steps of a training function."""

  def __init__(self, dim: int):
    with tf.init_scope():
      self.ids = tf.Variable(tf.zeros([0], tf.int64), trainable=False,
                             shape=tf.TensorShape([None]))
      self.grads = tf.Variable(tf.zeros([0, dim]), trainable=False,
                               shape=tf.TensorShape([None, dim]))
      self.lr = tf.Variable(0.0, trainable=False)

  def store(self, rows: PendingRows) -> None:
    self.ids.assign(rows.ids)
    self.grads.assign(rows.grads)
    self.lr.assign(rows.lr)

  def take(self) -> PendingRows:
    """The pending rows, leaving none: a failed step cannot apply them twice."""
    rows = PendingRows(self.ids.read_value(), self.grads.read_value(),
                       self.lr.read_value())
    # Ordered after the reads, as every access to one variable is.
    self.ids.assign(tf.zeros([0], tf.int64))
    self.grads.assign(tf.zeros([0, self.grads.shape[1]]))
    return rows


def is_large(table: Any) -> bool:
  """Whether `table` (a `TableConfig`) is large enough to defer."""
  return table.vocabulary_size * table.dim * 4 >= MIN_TABLE_BYTES


def lookup_ids(inputs: Any) -> tf.Tensor:
  """The ids a lookup of `inputs` (dense, sparse or ragged) reads, flat;
  padding ids below 0 are kept (they match no row)."""
  if isinstance(inputs, tf.SparseTensor):
    return inputs.values
  if isinstance(inputs, tf.RaggedTensor):
    return inputs.flat_values
  return tf.reshape(inputs, [-1])


class DeferredUpdates:
  """The pending updates of the large tables of one `CpuEmbedding`.

  A plain object, not a `tf.Module`: its variables are scratch space between
  the steps of one call, never checkpointed.
  """

  def __init__(self, tables: List[Any], apply_rows: ApplyRows):
    """Args: tables: the `TableConfig`s whose updates are deferred;
    apply_rows: applies rows of a table's update."""
    self._tables = {table.name: table for table in tables}
    self._apply_rows = apply_rows
    self._variables: Dict[str, _PendingVariables] = {}

  @property
  def table_names(self) -> List[str]:
    return list(self._tables)

  def _pending(self, name: str) -> _PendingVariables:
    # Created on first use, traced or not (`tf.init_scope`), before any step
    # that reads them is traced: every deferred table has them from then on.
    if name not in self._variables:
      self._variables[name] = _PendingVariables(self._tables[name].dim)
    return self._variables[name]

  def store(self, name: str, rows: PendingRows) -> None:
    """Keeps `rows` pending for table `name` (none may be pending)."""
    self._pending(name).store(rows)

  def apply_read_by(self, ids_by_table: Mapping[str, List[tf.Tensor]]
                   ) -> Dict[str, PendingRows]:
    """Applies the pending rows among `ids_by_table` (the ids each table's
    next lookups read); returns the others, for `apply_rest`."""
    rest = {}
    for name, table in self._tables.items():
      rows = self._pending(name).take()
      next_ids = ids_by_table.get(name, [])
      if not next_ids:
        rest[name] = rows
        continue
      read, unread = native_kernels.partition(
          rows.ids, tf.concat([tf.cast(ids, tf.int64) for ids in next_ids],
                              axis=0), table.vocabulary_size)
      self._apply(name, rows.select(read))
      rest[name] = rows.select(unread)
    return rest

  def apply_rest(self, rest: Mapping[str, PendingRows]) -> None:
    """Applies rows `apply_read_by` returned."""
    for name, rows in rest.items():
      self._apply(name, rows)

  def flush(self) -> None:
    """Applies every pending row."""
    for name in self._tables:
      self._apply(name, self._pending(name).take())

  def _apply(self, name: str, rows: PendingRows) -> None:
    self._apply_rows(self._tables[name], rows.ids, rows.grads, rows.lr,
                     rows.positions)
