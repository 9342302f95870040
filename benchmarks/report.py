"""Turns the results of `run_all` into BENCHMARKS.md.

`analyze` extracts the figures and ratios (used by the report and by the smoke
test); `render` writes the Markdown. Nothing here measures anything.
"""

import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from benchmarks import measure

ROUTE_LABELS = {
    'product': '`CpuEmbedding` through the trainer\'s own training '
               'function (`loop.compile_train_steps`, called as `loop.train` '
               'calls it: `steps_per_execution` steps per call, the loss and '
               'step read after each call, ids recorded for the health '
               'figures): TPU lookups, sparse TPU update rules. "one step per '
               'call" is the same function called for every step (the '
               'trainer\'s loop before `steps_per_execution`), timed in the '
               'same process after the main repetitions',
    'keras': 'hand-written: one `tf_keras.layers.Embedding` per table, ragged '
             'lookups combined with a masked mean/sum/sqrtn, a Keras optimizer '
             'on the tables',
    'tpu_serving': '`tf.tpu.experimental.embedding.TPUEmbeddingForServing` '
                   'lookups, a Keras optimizer on its tables (the route of '
                   'TensorFlow Recommenders on the CPU)',
}
ROUTE_ORDER = {'product': 0, 'keras': 1, 'tpu_serving': 2}
ROUTE_SHORT = {'product': 'this product', 'keras': 'tf_keras Embedding',
               'tpu_serving': 'TPUEmbeddingForServing'}
SYSTEM_LABELS = {
    'embedding_stats': 'EmbeddingStatsGen',
    'tfdv': 'TFDV GenerateStatistics (StatisticsGen)',
}
MIB = 1024.0 ** 2

Key = Tuple[Any, ...]


def _ok(results: Sequence[Mapping[str, Any]], kind: str):
  return [r for r in results if r['case']['kind'] == kind and 'error' not in r]


def _by_key(results, kind: str, fields: Sequence[str]) -> Dict[Key, Any]:
  return {tuple(r['case'][f] for f in fields): r for r in _ok(results, kind)}


def _input_ratios(input_pipeline, movies, field: str) -> Dict[str, float]:
  """{optimizer: the input case's `field` median / product's training rate}."""
  if not input_pipeline or field not in input_pipeline[0]:
    return {}
  return {opt: measure.ratio(
      input_pipeline[0][field]['median'],
      movies[(opt, 'product')]['examples_per_second']['median'])
          for opt, route in movies if route == 'product'}


def analyze(data: Mapping[str, Any]) -> Dict[str, Any]:
  """Figures and same-run ratios, keyed for the report and the tests.

  Returns a dict with:
    input: the input pipeline's result (or None)
    input_ratio: {optimizer: input examples/s / product's training rate}
    blocks_input_ratio: the same for the input parsed once into blocks
    streaming_input_ratio: the same for the input parsed every epoch
    movies: {(optimizer, route): result}
    movies_speedup: {(optimizer, route): product examples/s / route's}
    vocabulary: {(optimizer, vocabulary_size, route): result}
    vocabulary_slowdown: {(optimizer, size, route): route step / product's}
    vocabulary_growth: {(optimizer, route): step at largest / smallest size}
    interleaved_growth: {optimizer: the `vocab_growth` result: this
      product's steps on the smallest and largest tables in alternation}
    table_size_growth: {optimizer: this product's step on the largest table
      looked up with the smallest table's ids / its step on the smallest}
    sparse_kernel: {vocabulary_size: TensorFlow's sparse kernels alone}
    stats: {(scale, system): result}
    stats_ratio: {scale: TFDV seconds / EmbeddingStatsGen seconds}
    errors: the failed cases.
  """
  results = data['results']
  movies = _by_key(results, 'train_movies', ('optimizer', 'route'))
  vocabulary = _by_key(results, 'train_vocab',
                       ('optimizer', 'vocabulary_size', 'route'))
  stats = _by_key(results, 'stats', ('scale', 'system'))
  input_pipeline = _ok(results, 'input_movies')
  analysis = {
      'input': input_pipeline[0] if input_pipeline else None,
      'input_ratio': _input_ratios(input_pipeline, movies,
                                   'examples_per_second'),
      'blocks_input_ratio': _input_ratios(
          input_pipeline, movies, 'blocks_examples_per_second'),
      'streaming_input_ratio': _input_ratios(
          input_pipeline, movies, 'streaming_examples_per_second'),
      'movies': movies,
      'movies_speedup': {
          (opt, route): measure.ratio(
              movies[(opt, 'product')]['examples_per_second']['median'],
              r['examples_per_second']['median'])
          for (opt, route), r in movies.items()
          if route != 'product' and (opt, 'product') in movies},
      'vocabulary': vocabulary,
      'vocabulary_slowdown': {
          (opt, size, route): measure.ratio(
              r['step_ms']['median'],
              vocabulary[(opt, size, 'product')]['step_ms']['median'])
          for (opt, size, route), r in vocabulary.items()
          if route != 'product' and (opt, size, 'product') in vocabulary},
      'vocabulary_growth': _growth(vocabulary),
      'table_size_growth': _table_size_growth(results, vocabulary),
      'interleaved_growth': {r['case']['optimizer']: r
                             for r in _ok(results, 'vocab_growth')},
      'sparse_kernel': {r['case']['vocabulary_size']: r
                        for r in _ok(results, 'sparse_kernel')},
      'stats': stats,
      'stats_ratio': {
          scale: measure.ratio(r['seconds']['median'],
                               stats[(scale, 'embedding_stats')]['seconds']
                               ['median'])
          for (scale, system), r in stats.items()
          if system == 'tfdv' and (scale, 'embedding_stats') in stats},
      'errors': [r for r in results if 'error' in r],
  }
  return analysis


def _growth(vocabulary: Mapping[Key, Any]) -> Dict[Key, Optional[float]]:
  sizes = sorted({size for _, size, _ in vocabulary})
  if len(sizes) < 2:
    return {}
  growth = {}
  for opt, size, route in vocabulary:
    if size == sizes[-1] and (opt, sizes[0], route) in vocabulary:
      growth[(opt, route)] = measure.ratio(
          vocabulary[(opt, size, route)]['step_ms']['median'],
          vocabulary[(opt, sizes[0], route)]['step_ms']['median'])
  return growth


def _table_size_growth(results, vocabulary: Mapping[Key, Any]
                       ) -> Dict[str, Optional[float]]:
  """{optimizer: same ids, largest table's step / smallest table's step}."""
  growth = {}
  for r in _ok(results, 'train_vocab_same_ids'):
    smallest = vocabulary.get((r['case']['optimizer'], r['case']['id_range'],
                               r['case']['route']))
    if smallest:
      growth[r['case']['optimizer']] = measure.ratio(
          r['step_ms']['median'], smallest['step_ms']['median'])
  return growth


def _num(value: Optional[float], digits: int = 1) -> str:
  if value is None:
    return 'n/a'
  return f'{value:,.{digits}f}'


def _spread(summary: Mapping[str, Any], digits: int = 1) -> str:
  return (f'{_num(summary["median"], digits)} '
          f'({_num(summary["min"], digits)}–{_num(summary["max"], digits)})')


def _mib(value: Optional[float]) -> str:
  if value is None:
    return 'n/a'
  mib = value / MIB
  if abs(mib) < 10:
    return f'{mib:.2f}' if round(mib, 2) else '0'
  return f'{mib:,.0f}'


def _ratio(value: Optional[float]) -> str:
  return 'n/a' if value is None else f'{value:.2f}×'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return lines + ['']


def _machine(data: Mapping[str, Any]) -> List[str]:
  machine = data['machine']
  packages = machine['packages']
  cpu = data['cpu_seconds']
  share = cpu['others'] / max(data['seconds'] * machine['usable_cores'], 1e-9)
  lines = [
      '## Machine and run', '',
      f'- Run: `{data["command"]}`, started {data["started_utc"]} (UTC), '
      f'took {data["seconds"]:.0f} s'
      f'{" (smoke sizes: not representative)" if data["smoke"] else ""}.',
      f'- CPU: {machine["cpu"]}; {machine["cores"]} cores '
      f'({machine["usable_cores"]} usable); memory '
      f'{machine["memory_bytes"] / 1024 ** 3:.1f} GiB; {machine["os"]}; '
      'no accelerator used (CPU path).',
      f'- Python {machine["python"]}; ' + ', '.join(
          f'{name} {version}' for name, version in packages.items()) + '.',
      f'- Load average (1/5/15 min) before: '
      f'{"/".join(str(v) for v in data["load_average_before"])}, after: '
      f'{"/".join(str(v) for v in data["load_average_after"])}.',
      f'- CPU time during the run (/proc/stat): machine busy '
      f'{cpu["machine_busy"]:.0f} CPU-s, this benchmark '
      f'{cpu["benchmark"]:.0f} CPU-s, other processes {cpu["others"]:.0f} '
      f'CPU-s ({100 * share:.0f}% of the {machine["usable_cores"]} cores over '
      'the run).',
  ]
  if share > 0.05:
    lines.append('- **The machine was shared and noisy**: other processes '
                 'used the cores during the run, so absolute figures are '
                 'pessimistic and min–max spreads wide. Ratios compare '
                 'configurations run minutes apart in the same run, not '
                 'simultaneously.')
  return lines + ['']


def _rss_note(data: Mapping[str, Any]) -> str:
  if data['sizes']['one_worker']:
    return ('Smoke run: all cases shared one worker process, so each peak RSS '
            'is the process peak so far, not the case\'s own.')
  return ('Each configuration ran in its own worker process; peak RSS is its '
          'VmHWM (from /proc/self/status) when the case ended.')


def _movies(data, analysis) -> List[str]:
  sizes = data['sizes']
  movies = analysis['movies']
  lines = [
      '## Training throughput: the demo model on the CPU path', '',
      f'Synthetic movies ({sizes["movies_train_rows"]} training rows) through '
      'the demo `preprocessing_fn` (a real Transform output, '
      '`tests/trainer_fixture.py`), the demo embedding spec '
      '(`pipelines/movies/embedding_spec.py`: cast as a sequence, a shared '
      'crew table, five bags) with its optimizer replaced by the one in the '
      'table, and the demo tower `movies `EmbeddingMlp`` (dense layers: Keras Adam '
      f'1e-3 on every route). Batch size {sizes["movies_batch_size"]}; '
      f'{sizes["movies_num_batches"]} batches parsed, id-mapped '
      '(`BatchPreparer`) and cached in memory before timing, cycled by every '
      f'route. After the first step (tracing) and {sizes["warmup_steps"]} '
      f'warm-up steps, {sizes["reps"]} repetitions of N steps each (N chosen '
      f'for about {sizes["rep_seconds"]} s per repetition). Speedup = this '
      'product\'s median examples/s ÷ the route\'s (>1: this product is '
      'faster). "First step" is the first call, tracing included (once, not '
      'repeated). Routes:', ''] + [
          f'- {ROUTE_SHORT[route]}: {label}'
          for route, label in ROUTE_LABELS.items()] + ['']
  if not movies:
    reason = ('all its cases failed (see "Failed cases")' if
              data['sizes']['movies'] else 'smoke mode skips the demo model')
    return lines[:2] + [f'Not measured: {reason}.', '']
  rows = []
  for (opt, route), r in sorted(
      movies.items(), key=lambda kv: (kv[0][0], ROUTE_ORDER[kv[0][1]])):
    speedup = analysis['movies_speedup'].get((opt, route))
    stepwise = r.get('one_step_per_call')
    rows.append([
        opt, ROUTE_SHORT[route], _spread(r['examples_per_second'], 0),
        _num(r['step_ms']['median'], 2),
        str(r.get('steps_per_execution', 1)),
        _num(stepwise['step_ms']['median'], 2) if stepwise else '',
        str(r['steps_per_rep']),
        _num(r['first_step_seconds'], 1),
        '1 (reference)' if route == 'product' else _ratio(speedup),
        _mib(r['peak_rss_bytes']),
        _mib(r['peak_rss_bytes'] - r['rss_before_model_bytes']),
        f'{r["memory_plan_bytes"] / 1024:,.1f} KiB'])
  lines += _table(['table optimizer', 'route', 'examples/s median (min–max)',
                   'ms/step (median)', 'steps per call',
                   'ms/step at one step per call', 'steps/rep',
                   'first step s',
                   'speedup of this product',
                   'peak RSS MiB', 'RSS growth MiB', 'memory plan'], rows)
  lines.append(
      f'{_rss_note(data)} "RSS growth" is the peak minus the RSS just before '
      'the tables and the model were built (after the data was cached); the '
      'memory plan (`resolved.memory_plan().total_bytes`: tables + optimizer '
      'slots) of these tiny synthetic vocabularies is a few KiB, so process '
      'memory is dominated by TensorFlow itself and the traced step. This '
      'product\'s peak also covers its evaluation and export, measured in the '
      'same process after the timed steps (next section).')
  return lines + ['']


def _fixed_costs(data, analysis) -> List[str]:
  """The input pipeline's rate and the Trainer's once-per-run costs."""
  products = sorted((opt, r) for (opt, route), r in analysis['movies'].items()
                    if route == 'product')
  if not products and not analysis['input']:
    return []
  lines = [
      '## The whole Trainer: input pipeline and fixed costs (demo model)', '',
      'Input pipeline: the demo\'s transformed training examples read, '
      'shuffled, batched, parsed and id-mapped (`inputs.make_dataset` + '
      '`loop.BatchPreparer`) exactly as `loop.train` does and taken by a '
      'graph loop as the training function takes them, nothing trained; '
      f'{data["sizes"]["movies_input_batches"]} batches of '
      f'{data["sizes"]["movies_batch_size"]} per repetition, median (min–max) '
      'of the repetitions. Fixed costs, measured once each in this '
      'product\'s training case after its timed steps: the first step '
      '(tracing included), the evaluation as `loop.train` runs it '
      '(`loop.evaluate` over the eval split, tracing included) and the export '
      'as `training.run_training` runs it (`export.restore_tables` from a '
      'checkpoint + `export.export_serving_model`).', '']
  if analysis['input']:
    rate = analysis['input']['examples_per_second']
    lines.append(f'Input pipeline as the Trainer sets it up for the demo (its '
                 f'files are under `in_memory_train_mib`, so parsed into memory '
                 f'once): {_spread(rate, 0)} examples/s.')
    blocks = analysis['input'].get('blocks_examples_per_second')
    if blocks:
      lines.append(f'As the Trainer sets it up for training data above '
                   f'`in_memory_train_mib` (parsed once into blocks on local '
                   f'disk, `parse_once`): {_spread(blocks, 0)} examples/s.')
    streaming = analysis['input'].get('streaming_examples_per_second')
    if streaming:
      lines.append(f'Streamed from the files and parsed every epoch '
                   f'(`parse_once` False): {_spread(streaming, 0)} '
                   'examples/s.')
    lines.append('')
  rows = []
  for opt, r in products:
    costs = r.get('fixed_costs', {})
    rows.append([opt, _num(r['examples_per_second']['median'], 0),
                 _ratio(analysis['input_ratio'].get(opt)),
                 _ratio(analysis['blocks_input_ratio'].get(opt)),
                 _ratio(analysis['streaming_input_ratio'].get(opt)),
                 _num(r['first_step_seconds'], 1),
                 _num(costs.get('evaluation_seconds'), 1),
                 _num(costs.get('export_seconds'), 1)])
  lines += _table(['table optimizer', 'training examples/s (median)',
                   'input rate ÷ training rate',
                   'parsed blocks ÷ training rate',
                   'parsed every epoch ÷ training rate', 'first step s',
                   'evaluation s', 'export s'], rows)
  return lines + ['']


def _vocabulary(data, analysis) -> List[str]:
  sizes = data['sizes']
  vocabulary = analysis['vocabulary']
  vocab_sizes = sorted({size for _, size, _ in vocabulary})
  lines = [
      '## Step time as the vocabulary grows', '',
      f'One table, vocabulary {", ".join(f"{v:,}" for v in vocab_sizes)} '
      f'rows, dim {sizes["vocabulary_dimension"]}; batch '
      f'{sizes["vocabulary_batch_size"]} rows × '
      f'{sizes["vocabulary_ids_per_row"]} uniform random ids, mean combiner; '
      'same `movies `EmbeddingMlp`` tower (Keras Adam on the dense layers), '
      f'{sizes["vocabulary_num_batches"]} batches cached in memory. '
      'Milliseconds per training step (lookup, forward, backward, both '
      f'optimizers), median (min–max) of {sizes["reps"]} repetitions. '
      'This product\'s Adam is the TPU\'s lazy Adam (only touched rows move); '
      'Keras Adam decays the moments of every row on every step.', '']
  for opt in sorted({o for o, _, _ in vocabulary}):
    header = ['route'] + [f'{v:,} rows' for v in vocab_sizes]
    if len(vocab_sizes) > 1:
      header.append(f'growth {vocab_sizes[-1]:,} / {vocab_sizes[0]:,}')
    rows = []
    for route in ROUTE_SHORT:
      row = [ROUTE_SHORT[route]]
      for size in vocab_sizes:
        r = vocabulary.get((opt, size, route))
        row.append(_spread(r['step_ms'], 2) if r else 'failed')
      if len(vocab_sizes) > 1:
        row.append(_ratio(analysis['vocabulary_growth'].get((opt, route))))
      rows.append(row)
    lines += [f'**Table optimizer: {opt}** (ms/step)', '']
    lines += _table(header, rows)
    lines += _same_ids_line(data, analysis, opt, vocab_sizes)
    lines += _interleaved_line(analysis, opt)
    slow_rows = []
    for route in ('keras', 'tpu_serving'):
      slow_rows.append([ROUTE_SHORT[route]] + [
          _ratio(analysis['vocabulary_slowdown'].get((opt, size, route)))
          for size in vocab_sizes])
    lines += [f'Step time of the route ÷ this product\'s ({opt}; >1: this '
              'product is faster):', '']
    lines += _table(['route'] + [f'{v:,} rows' for v in vocab_sizes],
                    slow_rows)
  lines += _sparse_kernel_lines(analysis)
  lines += _vocabulary_memory(data, analysis, vocab_sizes)
  return lines


SPARSE_KERNELS = {
    'lookup': 'TF lookup (`SparseSegmentMean`, all ids)',
    'update_distinct_rows': 'TF Adagrad update, distinct rows',
    'native_lookup': 'native lookup, all ids',
    'native_update_distinct_rows': 'native Adagrad update, distinct rows',
}
# The two accesses of a step (lookup, update of the distinct rows), by family.
_STEP_KERNELS = {
    'tensorflow': ('lookup', 'update_distinct_rows'),
    'native': ('native_lookup', 'native_update_distinct_rows'),
}


def kernel_growth_ms(analysis) -> Optional[Dict[str, Optional[float]]]:
  """From the smallest to the largest table: how many ms the lookup and
  the update of the distinct rows grow together, TensorFlow's kernels
  ('tensorflow') and the native ones ('native', None where not built), and
  this product's Adagrad step ('step')."""
  kernels = analysis['sparse_kernel']
  sizes = sorted(kernels)
  if len(sizes) < 2:
    return None
  small, large = (analysis['vocabulary'].get(('adagrad', size, 'product'))
                  for size in (sizes[0], sizes[-1]))
  if not (small and large):
    return None

  def kernels_ms(size: int, names: Sequence[str]) -> Optional[float]:
    if not all(name in kernels[size] for name in names):
      return None
    return sum(kernels[size][name]['step_ms']['median'] for name in names)

  growth = {'step': large['step_ms']['median'] - small['step_ms']['median'],
            'allowance': 0.2 * small['step_ms']['median']}
  for family, names in _STEP_KERNELS.items():
    ends = [kernels_ms(size, names) for size in (sizes[0], sizes[-1])]
    growth[family] = None if None in ends else ends[1] - ends[0]
  return growth


def _growth_text(growth: Mapping[str, Optional[float]]) -> str:
  """One sentence: how the kernels and the step grow with the table."""
  native = ('' if growth['native'] is None else
            f', the native ones by {growth["native"]:.2f} ms')
  return (f'TensorFlow\'s lookup and Adagrad update of the distinct rows '
          f'grow by {growth["tensorflow"]:.2f} ms together{native}; this '
          f'product\'s Adagrad step grows by {growth["step"]:.2f} ms (1.2× '
          f'would allow {growth["allowance"]:.2f} ms).')


def _sparse_kernel_lines(analysis) -> List[str]:
  """TensorFlow's sparse kernels alone at each size, beside the step."""
  kernels = analysis['sparse_kernel']
  if not kernels:
    return []
  rows = []
  for size in sorted(kernels):
    step = analysis['vocabulary'].get(('adagrad', size, 'product'))
    rows.append([f'{size:,}'] + [
        f'{_spread(kernels[size][name]["step_ms"], 2)} '
        f'({kernels[size][name]["ids_per_step"]:,.0f} ids)'
        if name in kernels[size] else 'n/a' for name in SPARSE_KERNELS] +
                [_spread(step['step_ms'], 2) if step else 'n/a'])
  lines = ['**The sparse kernels alone** (ms per batch; the same batches, the '
           'table and one Adagrad accumulator, no gradient or model): the two '
           'table accesses of a step, with TensorFlow\'s kernels and with the '
           'prefetching native kernels this product\'s CPU path uses.', '']
  lines += _table(['rows'] + list(SPARSE_KERNELS.values()) +
                  ['this product\'s Adagrad step'], rows)
  growth = kernel_growth_ms(analysis)
  if growth:
    lines.append(f'From the smallest to the largest table, {_growth_text(growth)}')
  return lines + ['']


def _same_ids_line(data, analysis, opt: str,
                   vocab_sizes: Sequence[int]) -> List[str]:
  """This product's step on the largest table with the smallest's ids."""
  growth = analysis['table_size_growth'].get(opt)
  same = next((r for r in _ok(data['results'], 'train_vocab_same_ids')
               if r['case']['optimizer'] == opt), None)
  if growth is None or same is None:
    return []
  return [f'Same ids, larger table: the {vocab_sizes[-1]:,}-row table looked '
          f'up with ids drawn from its first {vocab_sizes[0]:,} rows (the '
          f'{vocab_sizes[0]:,}-row case\'s ids) takes '
          f'{_spread(same["step_ms"], 2)} ms/step, {_ratio(growth)} the '
          f'{vocab_sizes[0]:,}-row table\'s: what the table\'s size costs by '
          'itself. The rest of the growth comes with the ids spreading over '
          'more rows (more distinct rows per batch, each further apart in '
          'memory).', '']


def _interleaved_line(analysis, opt: str) -> List[str]:
  """This product's growth with the two sizes timed in alternation."""
  result = analysis['interleaved_growth'].get(opt)
  if result is None:
    return []
  small, large = sorted(result['step_ms'], key=int)
  return [f'Alternating in one process ({result["growth"]["n"]} repetitions '
          f'of each size, {result["steps_per_rep"]} steps each): this '
          f'product\'s step takes {_spread(result["step_ms"][small], 2)} ms '
          f'at {int(small):,} rows and {_spread(result["step_ms"][large], 2)} '
          f'ms at {int(large):,}: growth {_ratio(result["growth"]["median"])} '
          '(median of the adjacent repetitions\' ratios; a slow spell of the '
          'machine falls on both sizes, unlike the cases above, which run '
          'minutes apart).', '']


def _vocabulary_memory(data, analysis, vocab_sizes) -> List[str]:
  vocabulary = analysis['vocabulary']
  rows = []
  for opt in sorted({o for o, _, _ in vocabulary}):
    for size in vocab_sizes:
      plan = next((r['memory_plan_bytes'] for (o, s, _), r in
                   vocabulary.items() if o == opt and s == size), None)
      row = [opt, f'{size:,}', _mib(plan)]
      for route in ROUTE_SHORT:
        r = vocabulary.get((opt, size, route))
        row.append('failed' if not r else
                   f'{_mib(r["peak_rss_bytes"])} / '
                   f'{_mib(r["peak_rss_bytes"] - r["rss_before_model_bytes"])}')
      rows.append(row)
  lines = ['**Memory** (MiB): peak RSS / RSS growth (peak minus RSS before '
           'the tables and model were built), against the memory plan '
           '(tables + optimizer slots, float32; the Keras routes keep the '
           'same number of slots: Adagrad 1, Adam 2).', '']
  lines += _table(['optimizer', 'rows', 'memory plan'] +
                  [ROUTE_SHORT[r] for r in ROUTE_SHORT], rows)
  lines.append(_rss_note(data) + ' The plan counts only the tables and their '
               'slots: RSS growth also holds the dense model, the traced step '
               'and any transient copies made while initializing or updating '
               'the tables.')
  return lines + ['']


def _stats_data_text(sizes: Mapping[str, Any],
                     prepared: Optional[Mapping[str, Any]]) -> List[str]:
  """What the statistics benchmark read, from its preparation's manifest."""
  scales = ', '.join(f'{s}x' for s in sizes['stats_scales'])
  if not prepared:
    return [f'The demo\'s transformed training examples at {scales} '
            '(their preparation failed; see the errors).', '']
  sequence = prepared['sequence']
  films = (f'the first {sizes["stats_sample_films"]:,} films'
           if sizes['stats_sample_films'] else 'all films')
  return [
      f'The demo\'s real transformed training examples: {films} of the '
      f'bundled movies database ({prepared["films"]:,} read) through '
      'MoviesExampleGen\'s row conversion and train/eval split (film-id hash, '
      '4:1) and the demo `preprocessing_fn` under tf.Transform (its TF1 '
      'mode, to halve the preparation: the same ids; a z-scored float may '
      'differ in its last bit), giving '
      f'{prepared["base_examples"]:,} training examples of '
      f'{prepared["mean_example_bytes"]:,.0f} bytes on average '
      '(`benchmarks/movies_transformed.py`; prepared once in '
      f'{prepared["prepare_seconds"]["transform"]:.0f} s, files written in '
      f'{prepared["prepare_seconds"]["write"]:.0f} s). Scale k is one gzipped '
      'TFRecord file holding those records k times over (exact copies, same '
      'order), so every count at kx is k times the 1x count; each '
      'EmbeddingStatsGen run is checked to have counted every example. '
      f'{len(prepared["features"])} embedded features are measured (those '
      'the demo\'s embedding spec declares: '
      f'{", ".join(f"`{f}`" for f in prepared["features"])}); the sequence '
      f'`{sequence["feature"]}` has {sequence["mean_length"]:.1f} ids per '
      f'example on average (p99 {sequence["p99_length"]:.0f}, max '
      f'{sequence["max_length"]}), {sequence["distinct_ids"]:,} distinct ids '
      f'of {sequence["id_space"]:,}.', '']


def _stats(data, analysis) -> List[str]:
  sizes = data['sizes']
  stats = analysis['stats']
  prepared = next(iter(_ok(data['results'], 'prepare_stats')), None)
  lines = ['## Statistics: EmbeddingStatsGen against StatisticsGen (TFDV)', '']
  lines += _stats_data_text(sizes, prepared)
  lines += [
      'Both systems read the same file on the Beam DirectRunner with default '
      'options: this product\'s `GenerateEmbeddingStatistics` (the embedded '
      'features only) and `tfdv.generate_statistics_from_tfrecord` (TFDV '
      '`GenerateStatistics` with default `StatsOptions`, what StatisticsGen '
      'runs, over all features). EmbeddingStatsGen reads each file as one '
      'unit of work with TensorFlow\'s C++ TFRecord reader and example parser '
      '(`ReadExamplesAsRecordBatches`); TFDV reads with Beam\'s TFRecord '
      f'source and tfx-bsl\'s decoder. {sizes["stats_warmup"]} warm-up run(s), '
      f'then {sizes["reps"]} timed runs; seconds per run including pipeline '
      'start-up and writing the output. "RSS before" is the worker\'s '
      'resident memory after its imports, before the first run.', '']
  rows = []
  for scale in sizes['stats_scales']:
    ours, theirs = stats.get((scale, 'embedding_stats')), stats.get(
        (scale, 'tfdv'))
    count = (ours or theirs or {}).get('num_examples')
    rows.append([
        f'{scale}x', 'n/a' if count is None else f'{count:,}',
        _spread(ours['seconds'], 2) if ours else 'failed',
        _num(ours['examples_per_second']['median'], 0) if ours else 'n/a',
        _spread(theirs['seconds'], 2) if theirs else 'failed',
        _num(theirs['examples_per_second']['median'], 0) if theirs else 'n/a',
        _ratio(analysis['stats_ratio'].get(scale))] + [
            f'{_mib(r["peak_rss_bytes"])} ({_mib(r["rss_before_runs_bytes"])})'
            if r else 'n/a' for r in (ours, theirs)])
  lines += _table(
      ['scale', 'examples', 'EmbeddingStatsGen s median (min–max)',
       'its examples/s', 'TFDV s median (min–max)', 'its examples/s',
       'TFDV time ÷ EmbeddingStatsGen time',
       'EmbeddingStatsGen peak RSS MiB (RSS before)',
       'TFDV peak RSS MiB (RSS before)'], rows)
  lines.append(_rss_note(data))
  return lines + ['']


def _oov_rows(data) -> List[str]:
  """Evaluation metrics of the cold-user log per OOV mode."""
  results = _ok(data['results'], 'oov_rows')
  if not results:
    return []
  result = results[0]
  metrics = result['metrics']
  names = [n for n in ('log_loss', 'accuracy', 'top_k_accuracy')
           if n in metrics['random']]
  rows = [[f'`{mode}`'] + [_num(values[n], 4) for n in names]
          for mode, values in metrics.items()]
  return ['## OOV rows on cold users', '',
          'The interactions example with half of the users only in '
          'evaluation (`pipelines/interactions/cold_users.py`), '
          f'{result["train_steps"]} steps, same seed; only `oov_rows` '
          'differs. Statistics warnings: '
          f'{", ".join(result["warnings"]) or "none"}.', ''] + _table(
              ['oov_rows'] + names, rows)


def _pipeline(data) -> List[str]:
  pipeline = data['pipeline']
  lines = ['## Demo pipeline: wall time per component', '']
  if not pipeline['found']:
    return lines + [
        f'Not measured: {pipeline.get("reason", "no run found")} '
        f'(looked for `{pipeline["path"]}`). Run `make demo`, then '
        '`make bench`, to fill this section.', '']
  modified = _utc(pipeline['modified'])
  lines += [f'Latest run of pipeline `{pipeline["pipeline_name"]}` in '
            f'`{pipeline["path"]}` (store last modified {modified}), read '
            'with `pipelines.run_summary.latest_run` (execution create → last '
            'update time in ML Metadata; one run, not repeated). A CACHED '
            'component reused earlier outputs and took no time; the last '
            'column gives its newest execution that ran to completion, from '
            'the same store.', '']
  rows = []
  for node in pipeline['nodes']:
    completed = node.get('last_completed')
    rows.append([node['node_id'], node['state'], f'{node["seconds"]:.1f}',
                 f'{completed["seconds"]:.1f} (finished '
                 f'{_utc(completed["finished"])})' if completed else 'none'])
  total = sum(n['seconds'] for n in pipeline['nodes'])
  completed_total = sum(n['last_completed']['seconds']
                        for n in pipeline['nodes'] if n.get('last_completed'))
  rows.append(['**sum**', '', f'{total:.1f}', f'{completed_total:.1f}'])
  return lines + _table(['component', 'state (latest run)',
                         'seconds (latest run)',
                         'seconds of its latest completed execution'], rows)


def _warm_start(data) -> List[str]:
  """Remapping time by table size; eval metrics warm vs cold by steps."""
  remaps = _ok(data['results'], 'warm_remap')
  curves = _ok(data['results'], 'warm_curve')
  if not remaps and not curves:
    return []
  lines = ['## Warm start', '']
  if remaps:
    lines += ['Remapping one table and its Adagrad slot by token (dim 64; '
              '90% of the tokens kept in another order, 10% new), numpy only:',
              '']
    lines += _table(['rows', 'seconds', 'rows kept', 'rows new'], [
        [f'{r["case"]["rows"]:,}', _spread(r['seconds'], 2),
         f'{r["rows_kept"]:,}', f'{r["rows_new"]:,}'] for r in remaps])
    lines.append('')
  for result in curves:
    case = result['case']
    lines += [f'Synthetic movies, eval metrics after N steps (batch '
              f'{case["batch_size"]}) on the same data, from a base model '
              f'trained {case["base_steps"]} steps on {case["base_rows"]} '
              'rows with a smaller vocabulary (warm) or from scratch (cold):',
              '']
    lines += _table(['steps', 'AUC warm', 'AUC cold', 'log loss warm',
                     'log loss cold'], [
        [str(p['steps']), _num(p['warm'].get('auc'), 3),
         _num(p['cold'].get('auc'), 3), _num(p['warm'].get('log_loss'), 3),
         _num(p['cold'].get('log_loss'), 3)] for p in result['curve']])
    lines.append('')
  return lines


def _utc(timestamp: float) -> str:
  return datetime.datetime.fromtimestamp(
      timestamp, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def _errors(analysis) -> List[str]:
  if not analysis['errors']:
    return []
  lines = ['## Failed cases', '']
  for r in analysis['errors']:
    lines.append(f'- `{r["case"]}`: {r["error"][:500]}')
  return lines + ['']


def _headline(data, analysis) -> List[str]:
  lines = ['## Summary', '']
  for (opt, route), speedup in sorted(analysis['movies_speedup'].items()):
    lines.append(f'- Demo model, {opt}: this product trains at '
                 f'{_ratio(speedup)} the examples/s of the '
                 f'{ROUTE_SHORT[route]} route.')
  for (opt, route), r in sorted(analysis['movies'].items()):
    stepwise = r.get('one_step_per_call')
    if route == 'product' and stepwise:
      gain = measure.ratio(stepwise['step_ms']['median'],
                           r['step_ms']['median'])
      lines.append(f'- Demo model, {opt}: {r["steps_per_execution"]} steps '
                   f'per call train at {_ratio(gain)} the examples/s of one '
                   'step per call.')
  for opt, value in sorted(analysis['input_ratio'].items()):
    blocks = analysis['blocks_input_ratio'].get(opt)
    streamed = analysis['streaming_input_ratio'].get(opt)
    lines.append(f'- Demo model, {opt}: the input pipeline alone delivers '
                 f'{_ratio(value)} the examples/s this product trains at '
                 f'({_ratio(blocks)} from parsed blocks, as for files above '
                 f'`in_memory_train_mib`; {_ratio(streamed)} parsed every '
                 'epoch).')
  sizes = sorted({s for _, s, _ in analysis['vocabulary']})
  if sizes:
    for (opt, size, route), slow in sorted(
        analysis['vocabulary_slowdown'].items()):
      if size == sizes[-1]:
        lines.append(f'- {size:,}-row table, {opt}: the {ROUTE_SHORT[route]} '
                     f'route\'s step takes {_ratio(slow)} this product\'s.')
    for opt in sorted({o for o, _, _ in analysis['vocabulary']}):
      lines.append(_memory_headline(analysis['vocabulary'], opt, sizes[-1]))
    for (opt, route), growth in sorted(analysis['vocabulary_growth'].items()):
      lines.append(f'- Step time growth {sizes[0]:,} → {sizes[-1]:,} rows, '
                   f'{opt}, {ROUTE_SHORT[route]}: {_ratio(growth)}.')
    for opt, result in sorted(analysis['interleaved_growth'].items()):
      lines.append(f'- Step time growth {sizes[0]:,} → {sizes[-1]:,} rows, '
                   f'{opt}, this product, the sizes alternating in one '
                   f'process: {_ratio(result["growth"]["median"])}.')
    for opt, growth in sorted(analysis['table_size_growth'].items()):
      lines.append(f'- Table size alone, {opt}: with the same ids, the '
                   f'{sizes[-1]:,}-row table\'s step takes {_ratio(growth)} '
                   f'the {sizes[0]:,}-row table\'s.')
    kernels = kernel_growth_ms(analysis)
    if kernels:
      lines.append(f'- From {sizes[0]:,} to {sizes[-1]:,} rows, '
                   f'{_growth_text(kernels)}')
  for scale, value in sorted(analysis['stats_ratio'].items()):
    lines.append(f'- Statistics at {scale}x: TFDV takes {_ratio(value)} '
                 'the time of EmbeddingStatsGen.')
  if analysis['errors']:
    lines.append(f'- {len(analysis["errors"])} case(s) failed; see the end.')
  return lines + ['']


def _memory_headline(vocabulary: Mapping[Key, Any], opt: str,
                     size: int) -> str:
  parts = []
  plan = None
  for route in ROUTE_SHORT:
    r = vocabulary.get((opt, size, route))
    if r:
      plan = r['memory_plan_bytes']
      growth = r['peak_rss_bytes'] - r['rss_before_model_bytes']
      parts.append(f'{ROUTE_SHORT[route]} {_mib(growth)} MiB')
  return (f'- {size:,}-row table, {opt}: RSS growth {", ".join(parts)}; '
          f'memory plan {_mib(plan)} MiB.')


def _caveats(data) -> List[str]:
  return [
      '## Method notes and caveats', '',
      '- Same run, same machine, same batches, tower and dense optimizer for '
      'the three training routes; only the embedding (tables, lookups, table '
      'optimizer) differs. The product runs the trainer\'s own training '
      'function (`loop.compile_train_steps`) as `loop.train` calls it '
      '(`steps_per_execution` steps per call, AutoGraph skipping tf_keras\'s '
      'own code as `components/trainer/autograph_rules.py` sets it); the '
      'Keras routes are one `tf.function` call per step, as a hand-written '
      'loop is. The product\'s ids are range-checked once, on the host, by '
      '`IdMapper` in `BatchPreparer` (outside the timed step, as in '
      '`loop.train`), not again in the step.',
      '- The demo spec puts a warm-up/cosine schedule on the cast table; the '
      'Keras routes use a constant learning rate (same Adagrad 0.1 / Adam '
      '1e-3 otherwise). Initializers differ (Keras Embedding: uniform; TPU '
      'tables: truncated normal); neither changes the work per step.',
      '- The TFRS-route tables are built without TPU optimizer slots (the '
      'Keras optimizer owns the slots), as TFRS does with a Keras optimizer.',
      '- Keras optimizers are tf_keras 2.x defaults (no XLA on the CPU).',
      '- Input reading is excluded from training figures (batches cached); '
      'it is included in the statistics figures (both systems read gzipped '
      'TFRecords).',
      '- TFDV computes more statistics (all features, quantiles, top-k) '
      'than EmbeddingStatsGen (lengths and id counts of the embedded '
      'features): the ratio is the cost of each component as used, not of '
      'equal work.',
      '- Every figure comes from this run; nothing was edited by hand.',
      '']


def render(data: Mapping[str, Any]) -> str:
  """The Markdown report of one `run_all` run."""
  analysis = analyze(data)
  lines = ['# Benchmarks', '',
           'Generated by `make bench` (`python -m benchmarks.run_all`). '
           'Figures: median over repetitions, with (min–max).', '']
  lines += _headline(data, analysis)
  lines += _machine(data)
  lines += _movies(data, analysis)
  lines += _fixed_costs(data, analysis)
  lines += _vocabulary(data, analysis)
  lines += _stats(data, analysis)
  lines += _warm_start(data)
  lines += _oov_rows(data)
  lines += _pipeline(data)
  lines += _caveats(data)
  lines += _errors(analysis)
  return '\n'.join(lines).rstrip() + '\n'
