"""Smoke test of the benchmarks: they run and their figures are sane.

Timings never decide a test: only that every figure is a positive, finite
number and that every ratio was computed.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import measure
from benchmarks import report
from benchmarks import training_bench
from components import embedding as emb
from components.embedding import cpu_embedding
from components.embedding import native_kernels

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sane_summary(summary):
  return (summary['n'] >= 2 and
          all(measure.is_sane(v) for v in summary['values']) and
          summary['min'] <= summary['median'] <= summary['max'])


def _built_kernels():
  """The kernels the sparse-kernel case times here: the native ones only
  where they are built (a C++ compiler is on the machine)."""
  return [name for name in report.SPARSE_KERNELS
          if native_kernels.library() or not name.startswith('native_')]


def _check_result(result):
  kind = result['case']['kind']
  assert measure.is_sane(result['peak_rss_bytes']), result
  if kind in ('train_movies', 'train_vocab'):
    assert _sane_summary(result['examples_per_second']), result
    assert _sane_summary(result['step_ms']), result
    assert math.isfinite(result['final_loss']), result
    assert measure.is_sane(result['memory_plan_bytes']), result
  elif kind == 'input_movies':
    assert _sane_summary(result['examples_per_second']), result
    assert _sane_summary(result['blocks_examples_per_second']), result
    assert _sane_summary(result['streaming_examples_per_second']), result
  elif kind == 'sparse_kernel':
    for name in _built_kernels():
      assert _sane_summary(result[name]['step_ms']), result
      assert result[name]['ids_per_step'] > 0, result
  elif kind == 'stats':
    assert _sane_summary(result['seconds']), result
    assert _sane_summary(result['examples_per_second']), result


@pytest.mark.slow
def test_smoke_run_writes_sane_report(tmp_path):
  output = tmp_path / 'BENCHMARKS.md'
  raw = tmp_path / 'results.json'
  process = subprocess.run(
      [sys.executable, '-m', 'benchmarks.run_all', '--smoke', '--output',
       str(output), '--json', str(raw), '--metadata',
       str(tmp_path / 'missing' / 'metadata.sqlite')],
      cwd=_ROOT, env=measure.worker_env(), capture_output=True, text=True,
      timeout=300, check=False)
  assert process.returncode == 0, process.stderr[-3000:]
  data = json.loads(raw.read_text())
  analysis = report.analyze(data)
  assert not analysis['errors']
  for result in data['results']:
    _check_result(result)
  ratios = (list(analysis['vocabulary_slowdown'].values()) +
            list(analysis['stats_ratio'].values()))
  assert len(analysis['vocabulary_slowdown']) == 4  # 2 routes x 2 optimizers.
  assert len(analysis['stats_ratio']) == 2
  assert all(measure.is_sane(r) for r in ratios), ratios
  assert not data['pipeline']['found']
  assert not (tmp_path / 'missing').exists()  # The store is not created.
  text = output.read_text()
  for heading in ('## Machine and run', '## Step time as the vocabulary grows',
                  '## Statistics', '## Demo pipeline'):
    assert heading in text
  assert 'Not measured' in text


def _spec():
  sequence = emb.embedding_column(
      emb.sequence_categorical_column_with_identity('seq', 30), dimension=4,
      max_sequence_length=3)
  crew = emb.shared_embedding_columns(
      [emb.categorical_column_with_identity('director', 20),
       emb.categorical_column_with_identity('writer', 20)],
      dimension=4, combiner='sqrtn')
  bag = emb.embedding_column(emb.categorical_column_with_identity('bag', 10),
                             dimension=2, combiner='sum')
  mean = emb.embedding_column(emb.categorical_column_with_identity('genre', 7),
                              dimension=3, combiner='mean')
  return emb.EmbeddingSpec(columns=[sequence, bag, mean] + crew,
                           optimizer=emb.Adagrad(0.1))


def _sparse(rows):
  return tf.RaggedTensor.from_row_lengths(
      tf.constant([i for row in rows for i in row], tf.int64),
      [len(row) for row in rows]).to_sparse()


def test_keras_baseline_looks_up_as_the_product():
  """The hand-written Keras route computes the product's activations."""
  resolved = _spec().resolve()
  product = cpu_embedding.CpuEmbedding(resolved.compile(),
                                       resolved.compile_optimizer())
  keras_tables = training_bench.KerasTables(resolved)
  keras_tables.build()
  for table, variable in product.embedding_tables.items():
    keras_tables.tables[table.name].set_weights([variable.numpy()])
  ids = {
      'seq': _sparse([[1, 2, 3, 4], [], [29]]),
      'director': _sparse([[0], [19], [5]]),
      'writer': _sparse([[1, 2], [], [3, 4, 5]]),
      'bag': _sparse([[9, 9], [0], []]),
      'genre': _sparse([[1, 2, 6], [], [3]]),
  }
  expected = product(ids)
  actual = keras_tables(ids)
  for key in ids:
    np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(),
                               rtol=1e-5, atol=1e-6, err_msg=key)


def test_oov_rows_section_reports_both_modes():
  from benchmarks import run_all  # pylint: disable=g-import-not-at-top
  assert run_all.oov_rows_cases(run_all.SMOKE) == []
  assert run_all.oov_rows_cases(run_all.FULL) == [
      {'kind': 'oov_rows', 'train_steps': 200}]
  result = {'case': {'kind': 'oov_rows', 'train_steps': 300},
            'train_steps': 300,
            'warnings': ['untrained_oov_buckets user_id_xf'],
            'metrics': {'random': {'log_loss': 1.5925, 'accuracy': 0.398},
                        'zero': {'log_loss': 1.5548, 'accuracy': 0.4184}}}
  text = '\n'.join(report._oov_rows({'results': [result]}))  # pylint: disable=protected-access
  assert '| `random` | 1.5925 | 0.3980 |' in text
  assert '| `zero` | 1.5548 | 0.4184 |' in text
  assert 'untrained_oov_buckets user_id_xf' in text
  assert report._oov_rows({'results': []}) == []  # pylint: disable=protected-access


def _summary(value):
  return measure.summarize([value, value])


def test_report_relates_input_rate_and_fixed_costs_to_training():
  product = {'case': {'kind': 'train_movies', 'route': 'product',
                      'optimizer': 'adam'},
             'examples_per_second': _summary(1000.0), 'step_ms': _summary(1.0),
             'steps_per_rep': 3, 'first_step_seconds': 4.0,
             'fixed_costs': {'evaluation_seconds': 2.5,
                             'export_seconds': 7.0}}
  pipeline = {'case': {'kind': 'input_movies', 'optimizer': 'adagrad'},
              'examples_per_second': _summary(3500.0),
              'blocks_examples_per_second': _summary(3000.0),
              'streaming_examples_per_second': _summary(2000.0)}
  data = {'results': [product, pipeline],
          'sizes': {'movies_input_batches': 16, 'movies_batch_size': 256}}
  analysis = report.analyze(data)
  assert analysis['input_ratio'] == {'adam': 3.5}
  assert analysis['blocks_input_ratio'] == {'adam': 3.0}
  assert analysis['streaming_input_ratio'] == {'adam': 2.0}
  text = '\n'.join(report._fixed_costs(data, analysis))  # pylint: disable=protected-access
  assert '| adam | 1,000 | 3.50× | 3.00× | 2.00× | 4.0 | 2.5 | 7.0 |' in text


def test_report_separates_table_size_from_id_spread():
  from benchmarks import run_all  # pylint: disable=g-import-not-at-top
  same_ids = [c for c in run_all.vocabulary_cases(run_all.FULL)
              if c['kind'] == 'train_vocab_same_ids']
  assert [(c['optimizer'], c['vocabulary_size'], c['id_range'])
          for c in same_ids] == [('adagrad', 10**6, 10**4),
                                 ('adam', 10**6, 10**4)]
  assert not [c for c in run_all.vocabulary_cases(run_all.SMOKE)
              if c['kind'] == 'train_vocab_same_ids']

  def vocab(kind, size, step_ms, id_range=None):
    case = {'kind': kind, 'route': 'product', 'optimizer': 'adagrad',
            'vocabulary_size': size}
    if id_range:
      case['id_range'] = id_range
    return {'case': case, 'step_ms': _summary(step_ms)}

  data = {'results': [vocab('train_vocab', 100, 2.0),
                      vocab('train_vocab', 10_000, 3.0),
                      vocab('train_vocab_same_ids', 10_000, 2.1, 100)]}
  analysis = report.analyze(data)
  assert analysis['vocabulary_growth'][('adagrad', 'product')] == 1.5
  assert analysis['table_size_growth'] == {'adagrad': 1.05}
  text = '\n'.join(report._same_ids_line(data, analysis, 'adagrad',  # pylint: disable=protected-access
                                         [100, 10_000]))
  assert 'takes 2.10 (2.10–2.10) ms/step, 1.05× the 100-row' in text


def test_growth_alternates_the_smallest_and_largest_tables():
  from benchmarks import run_all  # pylint: disable=g-import-not-at-top
  assert [(c['optimizer'], c['vocabulary_sizes'])
          for c in run_all.vocabulary_cases(run_all.FULL)
          if c['kind'] == 'vocab_growth'] == [('adagrad', (10**4, 10**6)),
                                              ('adam', (10**4, 10**6))]
  case = {'kind': 'vocab_growth', 'route': 'product', 'optimizer': 'adagrad',
          'vocabulary_sizes': (50, 400), 'dimension': 4, 'batch_size': 8,
          'ids_per_row': 5, 'num_batches': 2, 'reps': 3, 'warmup_steps': 1,
          'rep_seconds': 0.01, 'min_steps': 2, 'max_steps': 4}
  result = training_bench.run_growth_case(case)
  assert set(result['step_ms']) == {'50', '400'}
  assert all(_sane_summary(s) and s['n'] == 3
             for s in result['step_ms'].values())
  ratios = [big / small for small, big in zip(
      result['step_ms']['50']['values'], result['step_ms']['400']['values'])]
  assert result['growth']['median'] == pytest.approx(np.median(ratios))
  data = {'results': [{'case': case, **result}]}
  text = '\n'.join(report._interleaved_line(report.analyze(data), 'adagrad'))  # pylint: disable=protected-access
  assert f'growth {result["growth"]["median"]:.2f}×' in text
  assert 'ms at 400' in text and 'at 50 rows' in text


def test_sparse_kernels_are_timed_on_the_vocabulary_batches():
  case = {'kind': 'sparse_kernel', 'vocabulary_size': 50, 'dimension': 4,
          'batch_size': 8, 'ids_per_row': 5, 'num_batches': 2, 'reps': 2,
          'warmup_steps': 1, 'rep_seconds': 0.01, 'min_steps': 2,
          'max_steps': 4}
  result = training_bench.run_sparse_kernel_case(case)
  ids, _ = training_bench._vocabulary_ids(case)  # pylint: disable=protected-access
  distinct = np.mean([len(np.unique(b)) for b in ids.reshape(2, -1)])
  assert result['lookup']['ids_per_step'] == 40
  assert result['update_distinct_rows']['ids_per_step'] == distinct < 40
  assert result['native_update_distinct_rows']['ids_per_step'] == distinct
  for name in _built_kernels():
    assert _sane_summary(result[name]['step_ms'])


def test_report_sets_kernel_growth_beside_the_step():
  def kernel(size, lookup_ms, update_ms, native_ms=None):
    result = {
        'case': {'kind': 'sparse_kernel', 'vocabulary_size': size},
        'lookup': {'step_ms': _summary(lookup_ms), 'ids_per_step': 10},
        'update_distinct_rows': {'step_ms': _summary(update_ms),
                                 'ids_per_step': 8}}
    if native_ms is not None:
      result['native_lookup'] = {'step_ms': _summary(native_ms),
                                 'ids_per_step': 10}
      result['native_update_distinct_rows'] = {
          'step_ms': _summary(native_ms), 'ids_per_step': 8}
    return result

  def step(size, step_ms):
    return {'case': {'kind': 'train_vocab', 'route': 'product',
                     'optimizer': 'adagrad', 'vocabulary_size': size},
            'step_ms': _summary(step_ms)}

  data = {'results': [kernel(100, 0.5, 1.0, 0.25),
                      kernel(10_000, 1.0, 2.0, 0.5),
                      step(100, 4.0), step(10_000, 6.0)]}
  analysis = report.analyze(data)
  assert report.kernel_growth_ms(analysis) == {
      'tensorflow': 1.5, 'native': 0.5, 'step': 2.0, 'allowance': 0.8}
  text = '\n'.join(report._sparse_kernel_lines(analysis))  # pylint: disable=protected-access
  assert '| 10,000 | 1.00 (1.00–1.00) (10 ids) |' in text
  assert 'grow by 1.50 ms together, the native ones by 0.50 ms' in text
  assert 'allow 0.80 ms' in text

  # Where the native kernels were not built: their columns say n/a.
  data['results'][1] = kernel(10_000, 1.0, 2.0)
  analysis = report.analyze(data)
  assert report.kernel_growth_ms(analysis)['native'] is None
  text = '\n'.join(report._sparse_kernel_lines(analysis))  # pylint: disable=protected-access
  assert '(8 ids) | n/a | n/a |' in text and 'native ones' not in text
