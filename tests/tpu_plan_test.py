"""The TPU memory plan per TPU type and engine, against hand computation."""

import types

import pytest

from components import embedding as emb
from components.trainer import engines
from components.trainer import plan as plan_lib

GIB = 1024 ** 3


def _spec(rows=1000, dim=10, optimizer=None):
  column = emb.embedding_column(emb.categorical_column_with_identity('a', rows),
                                dim)
  return emb.EmbeddingSpec([column], optimizer or emb.Adagrad(0.1)).resolve()


@pytest.mark.parametrize('tpu_type, chips, devices, hosts, sparse_cores', [
    ('v2-8', 4, 8, 1, 0), ('v3-32', 16, 32, 4, 0), ('v4-8', 4, 4, 1, 16),
    ('v5litepod-16', 16, 16, 2, 0), ('v5p-8', 4, 4, 1, 16),
    ('v6e-16', 16, 16, 2, 32), ('v6e', 1, 1, 1, 2)])
def test_slices(tpu_type, chips, devices, hosts, sparse_cores):
  tpu_slice = emb.parse_tpu_slice(tpu_type)
  assert (tpu_slice.num_chips, tpu_slice.num_devices, tpu_slice.num_hosts,
          tpu_slice.num_sparse_cores) == (chips, devices, hosts, sparse_cores)


def test_slice_count_must_match_cores_per_chip():
  with pytest.raises(ValueError, match="'v5p-5'.*2 TensorCore"):
    emb.parse_tpu_slice('v5p-5')


# 1000 x 10 float32 table with one Adagrad slot.
@pytest.mark.parametrize('tpu_type, engine, per_device, budget', [
    # V1: ceil(1000 / devices) rows x 10 x 4 bytes x 2.
    ('v2-8', 'v1', 125 * 10 * 4 * 2, 8 * GIB),
    ('v3-8', 'v1', 125 * 10 * 4 * 2, 16 * GIB),
    ('v4-8', 'v1', 250 * 10 * 4 * 2, 32 * GIB),
    # V0: the whole table and slot on every device.
    ('v5litepod-4', 'v0', 1000 * 10 * 4 * 2, 16 * GIB),
    # V2: rows padded to 8 x SparseCores (v5p-8: 16 SC -> 1024 rows), width
    # to 16; 1024 / 4 devices rows each.
    ('v5p-8', 'v2', 256 * 16 * 4 * 2, 95 * GIB),
    # v6e-8: 16 SparseCores -> 1024 rows over 8 devices.
    ('v6e-8', 'v2', 128 * 16 * 4 * 2, 32 * GIB),
])
def test_bytes_per_device_by_hand(tpu_type, engine, per_device, budget):
  plan = plan_lib.make_plan(_spec(), tpu_type)
  assert plan.engine == engine
  assert plan.bytes_per_device == per_device
  assert plan.budget_per_device == budget
  assert plan.fits and plan.ok


def test_forcing_v0_replicates_on_a_sparse_core_tpu():
  plan = plan_lib.make_plan(_spec(), 'v6e-8', engine='v0')
  assert plan.bytes_per_device == 1000 * 10 * 4 * 2


def test_v2_padding_is_printed():
  text = str(plan_lib.make_plan(_spec(), 'v6e-8'))
  assert 'a_embedding: padded to 1,024 x 16' in text
  assert 'Engine: v2 (TPUEmbeddingV2' in text
  assert 'Fits: yes' in text


def test_v5e_refuses_tables_that_do_not_fit_replicated():
  # 100M rows x 32 x 4 B x (1 + 2 Adam slots) = 35.8 GiB > v5e's 16 GiB.
  resolved = _spec(rows=100_000_000, dim=32, optimizer=emb.Adam(0.1))
  with pytest.raises(emb.MemoryBudgetExceededError) as error:
    plan_lib.check_before_training(resolved, 'v5litepod-8', batch_size=64)
  message = str(error.value)
  assert 'do not fit v5e-8 with engine v0' in message
  assert 'replicated on every device' in message
  # The smallest slice of 1, 4, 8, ... chips per generation: sharded, 35.8
  # GiB over 8 v2 devices (8 GiB each), 8 v3 devices, 4 v4 chips (32 GiB);
  # one v5p chip (95 GiB); 4 v6e chips; no v5e slice (replicated).
  assert ('TPU types that fit: v2-8 (v1), v3-8 (v1), v4-8 (v1), v5p-2 (v2), '
          'v6e-4 (v2).') in message
  assert 'a_embedding' in message  # the plan itself


def test_check_before_training_refuses_engine_errors():
  with pytest.raises(ValueError, match='batch_size=30 is not divisible by '
                     'the 8 TPU replicas'):
    plan_lib.check_before_training(_spec(), 'v6e-8', batch_size=30)
  plan = plan_lib.check_before_training(_spec(), 'v6e-8', batch_size=64)
  assert plan.engine == 'v2'


def test_plan_shows_sparse_core_limits():
  limits = engines.SparseCoreLimits(
      {'a_embedding': {'max_ids_per_partition': 32,
                       'max_unique_ids_per_partition': 16}}, 80)
  text = str(plan_lib.make_plan(_spec(), 'v6e-8', limits=limits))
  assert 'max_ids_per_chip_per_sample 80' in text
  assert 'a_embedding: max_ids_per_partition 32' in text
  v1_text = str(plan_lib.make_plan(_spec(), 'v4-8', limits=limits))
  assert 'SparseCore limits: not used by this engine.' in v1_text


def test_plan_command(monkeypatch, capsys, tmp_path):
  spec_file = tmp_path / 'spec.json'
  spec_file.write_text(emb.EmbeddingSpec(
      [emb.embedding_column(emb.categorical_column_with_identity('a', 1000),
                            10)], emb.Adagrad(0.1)).to_json())
  seen = {}

  def resolve(spec, transform_graph, lengths):
    seen.update(spec=spec, graph=transform_graph)
    return plan_lib._read_spec(spec).resolve()  # pylint: disable=protected-access

  monkeypatch.setattr(plan_lib, 'resolve_for_plan', resolve)
  status = plan_lib.main(['--tpu-type', 'v6e-8', '--spec', str(spec_file),
                          '--transform-graph', '/tf', '--batch-size', '64'])
  out = capsys.readouterr().out
  assert status == 0 and seen['graph'] == '/tf'
  assert 'TPU v6e-8: 8 chip(s), 8 device(s), 1 host(s), 16 SparseCore(s)' in out
  assert 'Fits: yes' in out
  status = plan_lib.main(['--tpu-type', 'v6e-8', '--spec', str(spec_file),
                          '--transform-graph', '/tf', '--batch-size', '60'])
  assert status == 1
  assert 'Refused: batch_size=60' in capsys.readouterr().out


def test_limits_come_from_statistics_of_the_same_topology():
  from components.embedding_stats import config as stats_config  # pylint: disable=g-import-not-at-top

  class Statistics:
    """The parts of EmbeddingStatistics the plan reads."""

    def __init__(self, chips, batch):
      self.sparsecore = types.SimpleNamespace(
          topology=stats_config.SparseCoreTopology(
              chips=chips, sparsecores_per_chip=2, global_batch_size=batch),
          tables={'a_embedding': types.SimpleNamespace(
              ids_over_tf216_default_share=0.25)})

    def recommended_sparsecore_limits(self):
      return {'a_embedding': {'max_ids_per_partition': 4,
                              'max_unique_ids_per_partition': 4}}

    def recommended_max_ids_per_chip_per_sample(self):
      return 8

  no_topology = types.SimpleNamespace(sparsecore=None)
  assert plan_lib.limits_from_statistics(no_topology, 'v6e-8', 64) is None
  # Measured for 4 chips, or another batch: not this slice's limits.
  assert plan_lib.limits_from_statistics(Statistics(4, 64), 'v6e-8', 64) is None
  assert plan_lib.limits_from_statistics(Statistics(8, 32), 'v6e-8', 64) is None
  limits = plan_lib.limits_from_statistics(Statistics(8, 64), 'v6e-8', 64)
  assert limits.max_ids_per_chip_per_sample == 8
  assert limits.tables['a_embedding'] == {
      'max_ids_per_partition': 4, 'max_unique_ids_per_partition': 4,
      'share_dropped_by_defaults': 0.25}
