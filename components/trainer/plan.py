"""The TPU plan: engine, bytes per device and SparseCore limits, without a TPU.

``python -m components.trainer.plan --tpu-type v6e-8 --spec SPEC
--transform-graph DIR [--statistics DIR] [--batch-size N] [--engine auto]``
prints for a resolved spec what would run on that TPU slice: the engine, the
bytes of tables and optimizer slots on the fullest device (sharded for V1/V2,
with the SparseCore padding of V2; replicated for V0), the device's HBM, the
SparseCore limits, the validation refusals, and whether it fits. The Trainer
runs the same ``check_before_training`` and refuses to start when it does not.
"""

import argparse
import dataclasses
import json
import sys
from typing import Any, List, Mapping, Optional, Sequence

from absl import logging

from components.embedding import memory
from components.trainer import engines

# Slice sizes (chips) tried when suggesting a TPU that fits.
_CHIP_COUNTS = (1, 4, 8, 16, 32, 64, 128, 256)


@dataclasses.dataclass(frozen=True)
class TpuPlan:
  """What a spec needs on a TPU slice under one engine."""

  tpu_slice: memory.TpuSlice
  engine: str
  bytes_per_device: int
  budget_per_device: int
  memory_plan: memory.MemoryPlan
  errors: List[str]
  limits: Optional[engines.SparseCoreLimits] = None

  @property
  def fits(self) -> bool:
    return self.bytes_per_device <= self.budget_per_device

  @property
  def ok(self) -> bool:
    return self.fits and not self.errors

  def limits_lines(self) -> List[str]:
    if self.engine != engines.V2:
      return ['SparseCore limits: not used by this engine.']
    if self.limits is None:
      return ["SparseCore limits: TF's defaults (no statistics given)."]
    lines = ['SparseCore limits (from the statistics):']
    if self.limits.max_ids_per_chip_per_sample is not None:
      lines.append(f'  max_ids_per_chip_per_sample '
                   f'{self.limits.max_ids_per_chip_per_sample}')
    for table, values in sorted(self.limits.tables.items()):
      lines.append(f'  {table}: max_ids_per_partition '
                   f'{values["max_ids_per_partition"]}, '
                   f'max_unique_ids_per_partition '
                   f'{values["max_unique_ids_per_partition"]}')
    return lines

  def __str__(self) -> str:
    s = self.tpu_slice
    lines = [
        f'TPU {s.name}: {s.num_chips} chip(s), {s.num_devices} device(s), '
        f'{s.num_hosts} host(s), {s.num_sparse_cores} SparseCore(s)',
        f'Engine: {engines.describe(self.engine)}',
        f'Tables and slots per device: {memory.format_bytes(self.bytes_per_device)}'
        f' of {memory.format_bytes(self.budget_per_device)} HBM per device',
    ]
    if self.engine == engines.V2:
      for table in self.memory_plan.tables:
        rows, width = table.engine_shape(engines.V2, s.num_sparse_cores)
        if (rows, width) != (table.vocabulary_size, table.dimension):
          lines.append(f'  {table.name}: padded to {rows:,} x {width}')
    lines += self.limits_lines()
    lines += [f'Refused: {e}' for e in self.errors]
    lines.append('Fits: ' + ('yes' if self.ok else 'NO'))
    return '\n'.join(lines + ['', str(self.memory_plan)])


def make_plan(resolved: Any, tpu_type: str, engine: str = engines.AUTO,
              batch_size: Optional[int] = None,
              limits: Optional[engines.SparseCoreLimits] = None) -> TpuPlan:
  """The plan of ``resolved`` on ``tpu_type`` ('v6e-8', 'v5p-16', 'v5e')."""
  tpu_slice = memory.parse_tpu_slice(tpu_type)
  engine = engines.select_engine(tpu_slice.generation.embedding_feature,
                                 engine)
  memory_plan = resolved.memory_plan()
  errors = []
  if batch_size is not None:
    errors = engines.validation_errors(
        engine, resolved, batch_size, tpu_slice.num_devices,
        tpu_slice.generation.sparse_cores_per_chip)
  if limits is not None:
    limits.check(list(resolved.tables))
  return TpuPlan(tpu_slice, engine,
                 memory_plan.engine_bytes_per_device(engine, tpu_slice),
                 tpu_slice.generation.hbm_bytes_per_device, memory_plan,
                 errors, limits)


def fitting_tpu_types(resolved: Any) -> List[str]:
  """The smallest slice of each generation the spec fits, and its engine."""
  result = []
  for name, generation in memory.TPU_GENERATIONS.items():
    for chips in _CHIP_COUNTS:
      tpu_type = memory.TpuSlice(generation, chips).name
      plan = make_plan(resolved, tpu_type)
      if plan.fits:
        result.append(f'{tpu_type} ({plan.engine})')
        break
  return result


def check_before_training(resolved: Any, tpu_type: str,
                          engine: str = engines.AUTO,
                          batch_size: Optional[int] = None,
                          limits: Optional[engines.SparseCoreLimits] = None
                         ) -> TpuPlan:
  """Raises unless ``resolved`` trains on ``tpu_type`` with ``engine``.

  Returns the plan (log it; its engine goes into the training result).

  Raises:
    memory.MemoryBudgetExceededError: the tables and slots exceed the HBM of
      a device; names the TPU type, the plan and the TPU types that fit.
    ValueError: the engine refuses the spec or the batch size.
  """
  plan = make_plan(resolved, tpu_type, engine, batch_size, limits)
  if not plan.fits:
    how = ('replicated on every device' if plan.engine == engines.V0 else
           'sharded over the devices')
    raise memory.MemoryBudgetExceededError(
        f'The embedding tables do not fit {plan.tpu_slice.name} with engine '
        f'{engines.describe(plan.engine)}: '
        f'{memory.format_bytes(plan.bytes_per_device)} per device {how}, '
        f'HBM {memory.format_bytes(plan.budget_per_device)}. TPU types that '
        f'fit: {", ".join(fitting_tpu_types(resolved)) or "none"}.\n{plan}')
  if plan.errors:
    engines.validate(plan.engine, resolved, batch_size,
                     plan.tpu_slice.num_devices,
                     plan.tpu_slice.generation.sparse_cores_per_chip)
  return plan


def _statistics(uri: str) -> Any:
  from components.embedding_stats import statistics as stats_lib  # pylint: disable=g-import-not-at-top
  return stats_lib.load_embedding_statistics(uri)


def limits_from_statistics(statistics: Any, tpu_type: str,
                           batch_size: Optional[int]
                          ) -> Optional[engines.SparseCoreLimits]:
  """The statistics' recommended SparseCore limits, when they fit the TPU.

  EmbeddingStatsGen measures ids per partition for the topology configured
  on it (``sparsecore_topology``); its limits apply only to a slice with the
  same chips, SparseCores per chip and global batch. Otherwise (or without
  a topology) None: TF's defaults, with a warning.
  """
  sparsecore = getattr(statistics, 'sparsecore', None)
  if sparsecore is None:
    return None
  topology = sparsecore.topology
  tpu_slice = memory.parse_tpu_slice(tpu_type)
  expected = (tpu_slice.num_chips,
              tpu_slice.generation.sparse_cores_per_chip,
              batch_size or topology.global_batch_size)
  measured = (topology.chips, topology.sparsecores_per_chip,
              topology.global_batch_size)
  if measured != expected:
    logging.warning(
        'The statistics measured SparseCore ids for %s (chips, SparseCores '
        'per chip, global batch); %s needs %s. Set EmbeddingStatsGen\'s '
        'sparsecore_topology to match; using TF\'s default limits.',
        measured, tpu_type, expected)
    return None
  tables = {
      table: dict(limits, share_dropped_by_defaults=(
          sparsecore.tables[table].ids_over_tf216_default_share))
      for table, limits in statistics.recommended_sparsecore_limits().items()}
  return engines.SparseCoreLimits(
      tables, statistics.recommended_max_ids_per_chip_per_sample())


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m components.trainer.plan', description=__doc__.split(
          '\n')[0])
  parser.add_argument('--tpu-type', required=True,
                      help="TPU slice, e.g. v6e-8, v5p-16, v5litepod-4")
  parser.add_argument('--spec', required=True,
                      help='embedding spec: JSON text, a .json file or the '
                      'dotted path of a function returning it')
  parser.add_argument('--transform-graph', required=True,
                      help="Transform's output directory (table sizes)")
  parser.add_argument('--statistics', default=None,
                      help='EmbeddingStatsGen output (sequence lengths, '
                      'SparseCore limits)')
  parser.add_argument('--limits', default=None,
                      help='JSON file of SparseCore limits {"tables": {...}, '
                      '"max_ids_per_chip_per_sample": n}')
  parser.add_argument('--batch-size', type=int, default=None,
                      help='global batch size (checks its split)')
  parser.add_argument('--engine', default=engines.AUTO,
                      choices=[engines.AUTO, *engines.ENGINES])
  return parser.parse_args(argv)


def _read_spec(value: str) -> Any:
  from components.trainer import training  # pylint: disable=g-import-not-at-top
  if value.endswith('.json'):
    with open(value, encoding='utf-8') as f:
      value = f.read()
  return training.load_embedding_spec(value)


def resolve_for_plan(spec: str, transform_graph: str,
                     max_sequence_lengths: Mapping[str, int]) -> Any:
  """The spec resolved against Transform's output, as the Trainer does."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  return _read_spec(spec).resolve(
      tf_transform_output=tft.TFTransformOutput(transform_graph),
      max_sequence_lengths=dict(max_sequence_lengths))


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Prints the plan; exit status 0 when it fits, 1 when it does not."""
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  lengths, limits = {}, None
  if args.statistics:
    statistics = _statistics(args.statistics)
    lengths = statistics.recommended_max_sequence_lengths()
    limits = limits_from_statistics(statistics, args.tpu_type,
                                    args.batch_size)
  if args.limits:
    with open(args.limits, encoding='utf-8') as f:
      limits = engines.SparseCoreLimits.from_dict(json.load(f))
  resolved = resolve_for_plan(args.spec, args.transform_graph, lengths)
  plan = make_plan(resolved, args.tpu_type, args.engine, args.batch_size,
                   limits)
  print(plan)
  if not plan.fits:
    print('TPU types that fit: ' + ', '.join(fitting_tpu_types(resolved)))
  return 0 if plan.ok else 1


if __name__ == '__main__':
  sys.exit(main())
