"""Memory plan: bytes of the embedding tables and their optimizer slots.

Checked before any TPU time is spent. Each table holds `vocabulary_size x dim`
float32 values, and the optimizer keeps as many table-sized float32 slots
(SGD 0, Adagrad 1, Adam 2, FTRL 2, AdagradMomentum 2). The TPU shards every
table row-wise over all devices, so a device holds about `1/num_devices` of
each table. Not counted: gradient-accumulation buffers, the dense model,
activations and the input pipeline, so leave headroom in the budget.

`TPU_GENERATIONS` holds, per TPU generation, the HBM of one chip, chips per
host, SparseCores per chip and the embedding engine (sources cited there);
`engine_bytes_per_device` gives the bytes per device of each engine: V0
replicates the tables, V1 shards rows, V2 shards rows padded to a multiple of
8 x SparseCores and widths padded to a multiple of 8.
`TPU_HBM_BYTES_PER_CHIP` holds the HBM of one chip. TensorFlow sees one device
per TensorCore on v2 and v3 (two per chip) and one device per chip from v4 on
(v4 and v5p join their two TensorCores as a megacore), so
`tpu_hbm_bytes_per_device` gives 8 GiB (v2), 16 GiB (v3), 32 GiB (v4),
16 GiB (v5e), 95 GiB (v5p) and 32 GiB (v6e).
"""

import dataclasses
import os
import re
from typing import Any, Iterable, List, Optional, Tuple

GIB = 1024 ** 3
FLOAT32_BYTES = 4
INT32_MAX_ROWS = 2 ** 31 - 1

# Engines: how a TPU holds the tables (see components.trainer.engines).
ENGINE_V0 = 'v0'  # TPUEmbeddingV0: tables replicated on every TPU device.
ENGINE_V1 = 'v1'  # TPUEmbedding: rows sharded over the devices.
ENGINE_V2 = 'v2'  # TPUEmbeddingV2 (SparseCore): rows sharded, padded.
SPARSE_CORE_ROW_MULTIPLE = 8  # tpu_embedding_v3._round_table_sizes
SPARSE_CORE_DIM_MULTIPLE = 8


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
  """What the memory plan and engine selection need of a TPU generation.

  Attributes:
    name: 'v2', 'v3', 'v4', 'v5e', 'v5p' or 'v6e'.
    hbm_bytes_per_chip: HBM of one chip.
    devices_per_chip: TensorFlow TPU devices (replicas) per chip: one per
      TensorCore on v2/v3, one per chip from v4 on (megacore on v4/v5p).
    cores_per_chip: TensorCores per chip; the count in accelerator names such
      as 'v5p-8' or 'v3-8' counts TensorCores, in 'v5litepod-8'/'v6e-8' chips.
    chips_per_host: chips attached to one TPU VM host.
    sparse_cores_per_chip: SparseCores per chip (0: none).
    embedding_feature: what ``tpu_hardware_feature.embedding_feature`` reports
      ('V1', 'V2' or 'UNSUPPORTED').
  """

  name: str
  hbm_bytes_per_chip: int
  devices_per_chip: int
  cores_per_chip: int
  chips_per_host: int
  sparse_cores_per_chip: int
  embedding_feature: str

  @property
  def hbm_bytes_per_device(self) -> int:
    return self.hbm_bytes_per_chip // self.devices_per_chip


# Sources (Cloud TPU documentation, read 2026):
# - HBM per chip, chips per host, TensorCores per chip: cloud.google.com/tpu/
#   docs/v2, /v3, /v4, /v5e ("HBM capacity per chip 16 GB", "Chips per host
#   8", no special features), /v5p ("HBM capacity per chip 95 GiB",
#   "TensorCores per chip 2", "SparseCores per chip 4", 4 chips per VM),
#   /v6e ("HBM capacity per chip 32 GB", "Chips per host 8", "Special
#   features: SparseCore").
# - SparseCores: cloud.google.com/tpu/docs/system-architecture-tpu-vm ("v5p
#   ... four SparseCores per chip, and v6e has two"); v4's four SparseCores:
#   the TPU v4 paper (Jouppi et al., ISCA 2023) and /tpu/docs/v4.
# - Embedding feature: v2/v3 run TPUEmbedding on the TensorCores' embedding
#   engine and v4 drives its SparseCores through the same V1 API; the V2
#   class (TPUEmbeddingV2, Keras-RS DistributedEmbedding) "needs to be run on
#   TPU v5p or v6e" (keras.io Keras-RS SparseCore tutorial); v5e has no
#   embedding hardware (UNSUPPORTED). The trainer reads the real value from
#   the TPU at run time; this table serves the plan made without a TPU.
TPU_GENERATIONS = {
    g.name: g for g in (
        TpuGeneration('v2', 16 * GIB, 2, 2, 4, 0, 'V1'),
        TpuGeneration('v3', 32 * GIB, 2, 2, 4, 0, 'V1'),
        TpuGeneration('v4', 32 * GIB, 1, 2, 4, 4, 'V1'),
        TpuGeneration('v5e', 16 * GIB, 1, 1, 8, 0, 'UNSUPPORTED'),
        TpuGeneration('v5p', 95 * GIB, 1, 2, 4, 4, 'V2'),
        TpuGeneration('v6e', 32 * GIB, 1, 1, 8, 2, 'V2'),
    )
}
TPU_HBM_BYTES_PER_CHIP = {name: g.hbm_bytes_per_chip
                          for name, g in TPU_GENERATIONS.items()}
TPU_DEVICES_PER_CHIP = {name: g.devices_per_chip
                        for name, g in TPU_GENERATIONS.items()}


class MemoryBudgetExceededError(ValueError):
  """The embedding tables and their slots do not fit the memory budget."""


def _generation_key(tpu_type: str) -> str:
  key = re.sub(r'-\d+$', '', tpu_type.lower())
  key = re.sub(r'[^a-z0-9]', '', key).replace('tpu', '')
  return key.replace('litepod', 'e').replace('lite', 'e')


def tpu_generation(tpu_type: str) -> TpuGeneration:
  """The generation of 'v5p-8', 'v5litepod-16', 'TPU v5 lite', 'v6e', ..."""
  key = _generation_key(tpu_type)
  if key not in TPU_GENERATIONS:
    raise ValueError(f'Unknown TPU type {tpu_type!r}; known: '
                     f'{sorted(TPU_GENERATIONS)}.')
  return TPU_GENERATIONS[key]


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """A TPU slice: its generation and chip count."""

  generation: TpuGeneration
  num_chips: int

  @property
  def name(self) -> str:
    count = self.num_chips * self.generation.cores_per_chip
    return f'{self.generation.name}-{count}'

  @property
  def num_devices(self) -> int:
    """TensorFlow TPU devices: the replicas of a TPUStrategy."""
    return self.num_chips * self.generation.devices_per_chip

  @property
  def num_hosts(self) -> int:
    return -(-self.num_chips // self.generation.chips_per_host)

  @property
  def num_sparse_cores(self) -> int:
    return self.num_chips * self.generation.sparse_cores_per_chip


def parse_tpu_slice(tpu_type: str) -> TpuSlice:
  """'v6e-8' -> 8 v6e chips; 'v5p-8' -> 4 v5p chips (the count is cores).

  Without a count ('v5e') the slice is one chip, the most conservative
  plan for sharded tables.
  """
  generation = tpu_generation(tpu_type)
  match = re.search(r'-(\d+)$', tpu_type.strip())
  if not match:
    return TpuSlice(generation, 1)
  count = int(match.group(1))
  if count <= 0 or count % generation.cores_per_chip:
    raise ValueError(
        f'{tpu_type!r}: a {generation.name} slice counts '
        f'{generation.cores_per_chip} TensorCore(s) per chip; use a multiple '
        f'of {generation.cores_per_chip}.')
  return TpuSlice(generation, count // generation.cores_per_chip)


def tpu_hbm_bytes_per_device(tpu_type: str) -> int:
  """Returns the HBM of one TensorFlow TPU device of `tpu_type`.

  Args:
    tpu_type: 'v2', 'v3', 'v4', 'v5e', 'v5p' or 'v6e'; accelerator names
      such as 'v5litepod-16', 'TPU v5 lite' or 'v4-8' are understood too.

  Raises:
    ValueError: for an unknown TPU type.
  """
  return tpu_generation(tpu_type).hbm_bytes_per_device


def sparse_core_padded_shape(vocabulary_size: int, dimension: int,
                             num_sparse_cores: int) -> Tuple[int, int]:
  """Rows and width of a table as ``TPUEmbeddingV2`` allocates it.

  TF pads rows to a multiple of 8 x the SparseCores of the slice and the
  width to a multiple of 8 (``tpu_embedding_v3._round_table_sizes``).
  """
  row_multiple = SPARSE_CORE_ROW_MULTIPLE * max(num_sparse_cores, 1)
  rows = -(-vocabulary_size // row_multiple) * row_multiple
  width = -(-dimension // SPARSE_CORE_DIM_MULTIPLE) * SPARSE_CORE_DIM_MULTIPLE
  return rows, width


def host_memory_bytes() -> int:
  """Returns the physical memory of this host (the CPU training budget)."""
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def format_bytes(size: float) -> str:
  """"1.5 GiB", "512 B": sizes for people."""
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

  def engine_shape(self, engine: str, num_sparse_cores: int = 0
                  ) -> Tuple[int, int]:
    """Rows and width the engine allocates (V2 pads both)."""
    if engine == ENGINE_V2:
      return sparse_core_padded_shape(self.vocabulary_size, self.dimension,
                                      num_sparse_cores)
    return self.vocabulary_size, self.dimension

  def engine_bytes_per_device(self, engine: str, num_devices: int,
                              num_sparse_cores: int = 0) -> int:
    """Bytes of table and slots on the fullest TPU device under `engine`.

    V0 replicates the whole table on every device; V1 shards the rows
    (``bytes_per_device``); V2 shards the padded rows evenly.
    """
    if engine == ENGINE_V0:
      return self.total_bytes
    rows, width = self.engine_shape(engine, num_sparse_cores)
    rows_per_device = -(-rows // num_devices)
    return rows_per_device * width * FLOAT32_BYTES * (1 + self.num_slots)


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

  def engine_bytes_per_device(self, engine: str, tpu_slice: TpuSlice) -> int:
    """Bytes of tables and slots on the fullest device of `tpu_slice`."""
    return sum(
        t.engine_bytes_per_device(engine, tpu_slice.num_devices,
                                  tpu_slice.num_sparse_cores)
        for t in self.tables)

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
        f'{t.name} ({format_bytes(t.bytes_per_device(num_devices))})'
        for t in self.tables[:3])
    raise MemoryBudgetExceededError(
        f'Embedding tables and {self.optimizer_name} slots need '
        f'{format_bytes(need)} per device over {num_devices} device(s), more '
        f'than the budget of {format_bytes(budget_bytes)}. Largest tables: '
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
          f'{format_bytes(t.table_bytes):>11} '
          f'{format_bytes(t.slot_bytes):>11} '
          f'{format_bytes(t.total_bytes):>11}')
    lines += [rule, f'{"total":<{len(header) - 12}} '
                    f'{format_bytes(self.total_bytes):>11}']
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
