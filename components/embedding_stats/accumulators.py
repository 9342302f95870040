"""Mergeable, exact accumulators for id-list lengths and id counts.

Plain Python/NumPy so that the create/add/merge logic is testable without
Beam. Memory grows with the largest length seen, the number of features and
the id space of vocabulary features, never with the number of rows. Merging is
element-wise integer addition (plus min/max), hence associative and
commutative: any merge order gives identical results.
"""

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np


def _add_padded(left: np.ndarray, right: np.ndarray) -> np.ndarray:
  """Adds two count vectors of possibly different lengths."""
  if left.size < right.size:
    left, right = right, left
  result = left.copy()
  result[:right.size] += right
  return result


class LengthHistogram:
  """An exact histogram of list lengths: `counts[k]` rows have length k."""

  __slots__ = ('counts',)

  def __init__(self, counts: Optional[np.ndarray] = None):
    self.counts = (np.zeros(0, dtype=np.int64) if counts is None
                   else np.asarray(counts, dtype=np.int64))

  @classmethod
  def from_pairs(cls, pairs: Iterable[Sequence[int]]) -> 'LengthHistogram':
    """Builds a histogram from `(length, count)` pairs."""
    pairs = [(int(length), int(count)) for length, count in pairs]
    size = max((length + 1 for length, _ in pairs), default=0)
    counts = np.zeros(size, dtype=np.int64)
    for length, count in pairs:
      counts[length] += count
    return cls(counts)

  def to_pairs(self) -> List[Tuple[int, int]]:
    """Returns the non-zero `(length, count)` pairs, by increasing length."""
    lengths = np.flatnonzero(self.counts)
    return [(int(k), int(self.counts[k])) for k in lengths]

  def add(self, lengths: np.ndarray) -> None:
    """Counts a batch of row lengths (non-negative integers)."""
    if lengths.size == 0:
      return
    self.counts = _add_padded(self.counts,
                              np.bincount(lengths.astype(np.int64)))

  def merge(self, other: 'LengthHistogram') -> None:
    self.counts = _add_padded(self.counts, other.counts)

  @property
  def num_rows(self) -> int:
    return int(self.counts.sum())

  @property
  def num_empty_rows(self) -> int:
    return int(self.counts[0]) if self.counts.size else 0

  @property
  def total_length(self) -> int:
    """Sum of all lengths, i.e. the number of ids."""
    return int(np.dot(np.arange(self.counts.size, dtype=np.int64),
                      self.counts))

  @property
  def min(self) -> Optional[int]:
    nonzero = np.flatnonzero(self.counts)
    return int(nonzero[0]) if nonzero.size else None

  @property
  def max(self) -> Optional[int]:
    nonzero = np.flatnonzero(self.counts)
    return int(nonzero[-1]) if nonzero.size else None

  @property
  def mean(self) -> Optional[float]:
    rows = self.num_rows
    return self.total_length / rows if rows else None

  def quantile(self, q: float) -> Optional[int]:
    """The exact lower quantile: the smallest length L with CDF(L) >= q.

    This is NumPy's `method='inverted_cdf'`; it is always a length that
    occurs in the data. None for an empty histogram.
    """
    rows = self.num_rows
    if not rows:
      return None
    # Rounding guards against float noise such as 0.999 * 1000 = 998.99...
    needed = max(1, math.ceil(round(q * rows, 9)))
    return int(np.searchsorted(np.cumsum(self.counts), needed, side='left'))

  def rows_longer_than(self, length: int) -> int:
    """Rows that a `max_sequence_length` of `length` truncates."""
    return int(self.counts[length + 1:].sum())

  def ids_beyond(self, length: int) -> int:
    """Ids that a `max_sequence_length` of `length` drops."""
    tail = self.counts[length + 1:]
    excess = np.arange(1, tail.size + 1, dtype=np.int64)
    return int(np.dot(excess, tail))


class IdCounts:
  """Counts of ids, exact per id over `[0, num_ids)` if `keep_counts`.

  Ids outside `[0, num_ids)` are only counted in total (`out_of_range`); the
  min and max id seen are kept so a bad id range is visible before training.
  The per-id vector is allocated on the first non-empty batch so that the
  many empty accumulators a runner creates stay small.
  """

  __slots__ = ('num_ids', 'keep_counts', 'counts', 'total', 'out_of_range',
               'min_id', 'max_id')

  def __init__(self, num_ids: int, keep_counts: bool):
    self.num_ids = int(num_ids)
    self.keep_counts = keep_counts
    self.counts: Optional[np.ndarray] = None
    self.total = 0
    self.out_of_range = 0
    self.min_id: Optional[int] = None
    self.max_id: Optional[int] = None

  def add(self, ids: np.ndarray) -> None:
    """Counts a flat batch of int64 ids."""
    if ids.size == 0:
      return
    self.total += int(ids.size)
    self._update_min_max(int(ids.min()), int(ids.max()))
    in_range = (ids >= 0) & (ids < self.num_ids)
    valid = ids[in_range]
    self.out_of_range += int(ids.size - valid.size)
    if self.keep_counts and valid.size:
      self._add_counts(np.bincount(valid, minlength=self.num_ids))

  def merge(self, other: 'IdCounts') -> None:
    self.total += other.total
    self.out_of_range += other.out_of_range
    if other.min_id is not None:
      self._update_min_max(other.min_id, other.max_id)
    if other.counts is not None:
      self._add_counts(other.counts)

  def dense_counts(self) -> np.ndarray:
    """Per-id counts over `[0, num_ids)` (zeros if nothing was counted)."""
    if self.counts is None:
      return np.zeros(self.num_ids if self.keep_counts else 0, dtype=np.int64)
    return self.counts

  def _add_counts(self, counts: np.ndarray) -> None:
    if self.counts is None:
      self.counts = counts.astype(np.int64, copy=True)
    else:
      self.counts += counts

  def _update_min_max(self, low: int, high: int) -> None:
    self.min_id = low if self.min_id is None else min(self.min_id, low)
    self.max_id = high if self.max_id is None else max(self.max_id, high)


class FeatureAccumulator:
  """Lengths and ids of one feature."""

  __slots__ = ('lengths', 'ids')

  def __init__(self, num_ids: int, keep_counts: bool):
    self.lengths = LengthHistogram()
    self.ids = IdCounts(num_ids, keep_counts)

  def add(self, lengths: np.ndarray, ids: np.ndarray) -> None:
    self.lengths.add(lengths)
    self.ids.add(ids)

  def merge(self, other: 'FeatureAccumulator') -> None:
    self.lengths.merge(other.lengths)
    self.ids.merge(other.ids)


class DatasetAccumulator:
  """Accumulators of all measured features of one split.

  `sparsecore`, when set, is a `sparsecore.SparseCoreAccumulator` (or any
  object with the same `add`/`merge`) that also sees every batch.
  """

  __slots__ = ('num_examples', 'features', 'sparsecore')

  def __init__(self, id_spaces: Mapping[str, Tuple[int, bool]],
               sparsecore: Optional[Any] = None):
    """Creates empty accumulators.

    Args:
      id_spaces: feature name -> (size of the id space, whether per-id counts
        are kept).
      sparsecore: Optional SparseCore accumulator.
    """
    self.num_examples = 0
    self.features: Dict[str, FeatureAccumulator] = {
        name: FeatureAccumulator(num_ids, keep)
        for name, (num_ids, keep) in id_spaces.items()
    }
    self.sparsecore = sparsecore

  def add(self, num_examples: int,
          columns: Mapping[str, Tuple[np.ndarray, np.ndarray]]) -> None:
    """Adds one batch: feature name -> (row lengths, flat ids)."""
    self.num_examples += num_examples
    for name, (lengths, ids) in columns.items():
      self.features[name].add(lengths, ids)
    if self.sparsecore is not None:
      self.sparsecore.add(num_examples, columns)

  def merge(self, other: 'DatasetAccumulator') -> None:
    self.num_examples += other.num_examples
    for name, accumulator in other.features.items():
      self.features[name].merge(accumulator)
    if self.sparsecore is not None and other.sparsecore is not None:
      self.sparsecore.merge(other.sparsecore)
