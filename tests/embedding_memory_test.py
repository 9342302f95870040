"""Tests of the embedding memory plan."""

import pytest

from components import embedding as emb

GIB = 1024 ** 3


def _spec(optimizer, sizes=((1000, 8), (50, 4))):
  columns = [
      emb.embedding_column(emb.categorical_column_with_identity(f'f{i}', rows),
                           dim)
      for i, (rows, dim) in enumerate(sizes)
  ]
  return emb.EmbeddingSpec(columns, optimizer).resolve()


@pytest.mark.parametrize('optimizer, slots', [
    (emb.SGD(), 0), (emb.Adagrad(), 1), (emb.Adam(), 2), (emb.FTRL(), 2),
    (emb.AdagradMomentum(), 2)])
def test_bytes_of_tables_and_slots(optimizer, slots):
  plan = _spec(optimizer).memory_plan()
  big, small = plan.tables
  assert (big.name, big.table_bytes, big.slot_bytes) == (
      'f0_embedding', 1000 * 8 * 4, 1000 * 8 * 4 * slots)
  assert (small.name, small.table_bytes) == ('f1_embedding', 50 * 4 * 4)
  assert plan.total_bytes == (1000 * 8 + 50 * 4) * 4 * (1 + slots)


def test_shared_tables_are_counted_once():
  columns = emb.shared_embedding_columns(
      [emb.categorical_column_with_identity('a', 100),
       emb.categorical_column_with_identity('b', 100)], 10)
  plan = emb.EmbeddingSpec(columns, emb.SGD()).resolve().memory_plan()
  assert [t.name for t in plan.tables] == ['a_b_shared_embedding']
  assert plan.total_bytes == 100 * 10 * 4


def test_check_passes_within_budget_and_shards_over_devices():
  plan = _spec(emb.Adagrad(), sizes=((1001, 8),)).memory_plan()
  plan.check(plan.total_bytes)
  per_device = plan.bytes_per_device(4)
  assert per_device == 251 * 8 * 4 * 2
  plan.check(per_device, num_devices=4)
  with pytest.raises(emb.MemoryBudgetExceededError):
    plan.check(per_device - 1, num_devices=4)
  with pytest.raises(ValueError, match='num_devices'):
    plan.check(GIB, num_devices=0)


def test_check_names_the_largest_tables():
  plan = _spec(emb.Adam(), sizes=((10, 4), (5000, 64), (3000, 64),
                                   (2000, 64))).memory_plan()
  with pytest.raises(emb.MemoryBudgetExceededError) as error:
    plan.check(1024 * 1024)
  message = str(error.value)
  assert 'Largest tables: f1_embedding' in message
  assert 'f2_embedding' in message and 'f3_embedding' in message
  assert 'f0_embedding' not in message
  assert 'Adam slots' in message and '1.0 MiB' in message


def test_tpu_hbm_per_device():
  assert emb.tpu_hbm_bytes_per_device('v2') == 8 * GIB
  assert emb.tpu_hbm_bytes_per_device('v3') == 16 * GIB
  assert emb.tpu_hbm_bytes_per_device('v4') == 32 * GIB
  assert emb.tpu_hbm_bytes_per_device('v5e') == 16 * GIB
  assert emb.tpu_hbm_bytes_per_device('TPU-v5-lite') == 16 * GIB
  assert emb.tpu_hbm_bytes_per_device('v5litepod-16') == 16 * GIB
  assert emb.tpu_hbm_bytes_per_device('v4-8') == 32 * GIB
  assert emb.tpu_hbm_bytes_per_device('v5p') == 95 * GIB
  assert emb.tpu_hbm_bytes_per_device('v6e') == 32 * GIB
  assert emb.TPU_HBM_BYTES_PER_CHIP['v3'] == 32 * GIB
  with pytest.raises(ValueError, match='Unknown TPU type'):
    emb.tpu_hbm_bytes_per_device('v9')
  assert emb.host_memory_bytes() > GIB


def test_a_large_vocabulary_does_not_fit_one_v5e_chip():
  plan = _spec(emb.Adam(), sizes=((50_000_000, 64),)).memory_plan()
  with pytest.raises(emb.MemoryBudgetExceededError, match='f0_embedding'):
    plan.check(emb.tpu_hbm_bytes_per_device('v5e'))
  plan.check(emb.tpu_hbm_bytes_per_device('v5e'), num_devices=8)


def test_rendering():
  text = str(_spec(emb.Adagrad()).memory_plan())
  lines = text.splitlines()
  assert lines[0] == 'Embedding memory plan (Adagrad, float32)'
  assert lines[3].split()[:3] == ['f0_embedding', '1,000', '8']
  assert '31.2 KiB' in lines[3]
  assert lines[-1].startswith('total') and lines[-1].endswith('64.1 KiB')
