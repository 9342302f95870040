"""Memory plan: bytes of the embedding tables and their optimizer slots.

Checked before any TPU time is spent. Each table holds `vocabulary_size x dim`
float32 values, and the optimizer keeps as many table-sized float32 slots
(SGD 0, Adagrad 1, Adam 2, FTRL 2, AdagradMomentum 2). The TPU shards every
table row-wise over all devices, so a device holds about `1/num_devices` of
each table. Not counted: gradient-accumulation buffers, the dense model,
activations and the input pipeline, so leave headroom in the budget.

`TPU_HBM_BYTES_PER_CHIP` holds the HBM of one chip. TensorFlow sees one device
per TensorCore on v2 and v3 (two per chip) and one device per chip from v4 on
(v4 and v5p join their two TensorCores as a megacore), so
`tpu_hbm_bytes_per_device` gives 8 GiB (v2), 16 GiB (v3), 32 GiB (v4),
16 GiB (v5e), 95 GiB (v5p) and 32 GiB (v6e).
"""

import dataclasses
import os
import re
from typing import Any, Iterable, List, Optional

GIB = 1024 ** 3
FLOAT32_BYTES = 4

TPU_HBM_BYTES_PER_CHIP = {
    'v2': 16 * GIB,
    'v3': 32 * GIB,
    'v4': 32 * GIB,
    'v5e': 16 * GIB,
    'v5p': 95 * GIB,
    'v6e': 32 * GIB,
}
TPU_DEVICES_PER_CHIP = {'v2': 2, 'v3': 2, 'v4': 1, 'v5e': 1, 'v5p': 1,
                        'v6e': 1}


class MemoryBudgetExceededError(ValueError):
  """The embedding tables and their slots do not fit the memory budget."""


def tpu_hbm_bytes_per_device(tpu_type: str) -> int:
  """Returns the HBM of one TensorFlow TPU device of `tpu_type`.

  Args:
    tpu_type: 'v2', 'v3', 'v4', 'v5e', 'v5p' or 'v6e'; accelerator names
      such as 'v5litepod-16', 'TPU v5 lite' or 'v4-8' are understood too.

  Raises:
    ValueError: for an unknown TPU type.
  """
  key = re.sub(r'-\d+$', '', tpu_type.lower())
  key = re.sub(r'[^a-z0-9]', '', key).replace('tpu', '')
  key = key.replace('litepod', 'e').replace('lite', 'e')
  if key not in TPU_HBM_BYTES_PER_CHIP:
    raise ValueError(f'Unknown TPU type {tpu_type!r}; known: '
                     f'{sorted(TPU_HBM_BYTES_PER_CHIP)}.')
  return TPU_HBM_BYTES_PER_CHIP[key] // TPU_DEVICES_PER_CHIP[key]


def host_memory_bytes() -> int:
  """Returns the physical memory of this host (the CPU training budget)."""
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def _format_bytes(size: float) -> str:
  for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
    if size < 1024 or unit == 'TiB':
      return f'{size:.1f} {unit}' if unit != 'B' else f'{int(size)} B'
    size /= 1024.0
  return f'{size} B'


@dataclasses.dataclass(frozen=True)
class TableMemory:
  """The memory of one table and of its optimizer slots."""

  name: str
  vocabulary_size: int
  dimension: int
  num_slots: int

  @property
  def table_bytes(self) -> int:
    return self.vocabulary_size * self.dimension * FLOAT32_BYTES

  @property
  def slot_bytes(self) -> int:
    return self.table_bytes * self.num_slots

  @property
  def total_bytes(self) -> int:
    return self.table_bytes + self.slot_bytes

  def bytes_per_device(self, num_devices: int) -> int:
    """Bytes on the fullest device, rows sharded over `num_devices`."""
    rows = -(-self.vocabulary_size // num_devices)
    return rows * self.dimension * FLOAT32_BYTES * (1 + self.num_slots)


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """The memory of every table, largest first."""

  tables: List[TableMemory]
  optimizer_name: str

  @property
  def total_bytes(self) -> int:
    return sum(t.total_bytes for t in self.tables)

  def bytes_per_device(self, num_devices: int = 1) -> int:
    """Bytes of tables and slots on one device, rows sharded over devices."""
    return sum(t.bytes_per_device(num_devices) for t in self.tables)

  def check(self, budget_bytes: int, num_devices: int = 1) -> None:
    """Raises if the tables and slots exceed `budget_bytes` per device.

    Args:
      budget_bytes: memory available to embeddings on one device, e.g.
        `tpu_hbm_bytes_per_device('v5e')` or `host_memory_bytes()`.
      num_devices: devices the tables are sharded over (1 on the CPU).

    Raises:
      MemoryBudgetExceededError: naming the largest tables.
    """
    if num_devices < 1:
      raise ValueError(f'num_devices must be >= 1, got {num_devices}.')
    need = self.bytes_per_device(num_devices)
    if need <= budget_bytes:
      return
    largest = ', '.join(
        f'{t.name} ({_format_bytes(t.bytes_per_device(num_devices))})'
        for t in self.tables[:3])
    raise MemoryBudgetExceededError(
        f'Embedding tables and {self.optimizer_name} slots need '
        f'{_format_bytes(need)} per device over {num_devices} device(s), more '
        f'than the budget of {_format_bytes(budget_bytes)}. Largest tables: '
        f'{largest}. Reduce their vocabulary or dimension, use an optimizer '
        'with fewer slots, or use more devices.')

  def __str__(self) -> str:
    width = max([len('table')] + [len(t.name) for t in self.tables])
    header = (f'{"table":<{width}} {"rows":>13} {"dim":>5} {"table":>11} '
              f'{"slots":>11} {"total":>11}')
    rule = '-' * len(header)
    lines = [f'Embedding memory plan ({self.optimizer_name}, float32)', header,
             rule]
    for t in self.tables:
      lines.append(
          f'{t.name:<{width}} {t.vocabulary_size:>13,} {t.dimension:>5} '
          f'{_format_bytes(t.table_bytes):>11} '
          f'{_format_bytes(t.slot_bytes):>11} '
          f'{_format_bytes(t.total_bytes):>11}')
    lines += [rule, f'{"total":<{len(header) - 12}} '
                    f'{_format_bytes(self.total_bytes):>11}']
    return '\n'.join(lines)


def plan_memory(tables: Iterable[Any], optimizer: Any,
                num_slots: Optional[int] = None) -> MemoryPlan:
  """Returns the memory plan of resolved tables under `optimizer`.

  Args:
    tables: `resolved.ResolvedTable`s (anything with name, vocabulary_size
      and dimension).
    optimizer: an `optimizers.EmbeddingOptimizer`; gives the slot count.
    num_slots: overrides the optimizer's slot count.
  """
  slots = optimizer.num_slots if num_slots is None else num_slots
  entries = [TableMemory(t.name, t.vocabulary_size, t.dimension, slots)
             for t in tables]
  entries.sort(key=lambda t: (-t.total_bytes, t.name))
  return MemoryPlan(entries, type(optimizer).__name__)
