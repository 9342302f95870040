"""Warm start that follows the vocabulary: tables remapped by token.

A new run's Transform builds new vocabularies: a token keeps its meaning but
changes row, new tokens appear and old ones vanish. ``apply`` starts a fresh
run from a base model (``warm_start_state``), table by table:

* vocabulary tables: the row and every optimizer slot of each token in both
  vocabularies is copied to its new row; new tokens keep the table's
  initializer and fresh slots (the values the embedding creates: Adagrad's
  initial accumulator, zero moments...); vanished tokens are dropped; the OOV
  buckets are kept when their number is unchanged, re-initialized otherwise.
  Shared tables remap through their shared vocabulary;
* identity tables keep their rows by id (truncated or extended);
* a table new in the spec, or whose rows have no stable meaning ('unknown'),
  starts fresh (logged); base tables no longer in the spec are dropped.

A changed dimension, a changed row kind, or a base optimizer without the new
optimizer's slots is a mismatch: an error naming the table by default; with
``TrainingConfig.warm_start_on_mismatch='fresh'`` such a table starts fresh
(dimension, kind) or keeps its rows with fresh slots (optimizer), logged.

The remapped tables go through a checkpoint in the run's layout (one variable
per table as the CPU, V0 and V1 paths keep them, or V2's stacked SparseCore
variables: ``sparsecore_layouts``), read into the run's embedding before step
0 (deferred restoration: on a TPU the variables are loaded when the embedding
is built). A V2 base model's stacked tables are split the same way.
The dense model is restored when its variables (names and shapes) match the
base's, else refused with what changed (``warm_start_dense=False``: tables
only); its optimizer starts fresh.

Every step is vectorised numpy (no Python loop over tokens); see
``benchmarks/warm_start_bench.py`` for the time at 10^6 rows.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from components.embedding import cpu_embedding
from components.trainer import engines
from components.trainer import sparsecore_layouts
from components.trainer import warm_start_state as state_lib

ON_MISMATCH = ('error', 'fresh')
STAGING_DIR = 'warm_start'
REPORT_FILE = 'report.json'
# Training batches whose ids are counted for the share that hits warm rows.
HIT_SAMPLE_BATCHES = 20


def token_sources(old_tokens: np.ndarray, new_tokens: np.ndarray) -> np.ndarray:
  """Per new token, its row in ``old_tokens``, or -1.

  One stable sort of both vocabularies together: a token in both sits right
  after its old copy. Tokens are unique within each vocabulary (as
  Transform's are).
  """
  sources = np.full(len(new_tokens), -1, dtype=np.int64)
  if not len(old_tokens) or not len(new_tokens):
    return sources
  tokens = np.concatenate([old_tokens, new_tokens])
  order = np.argsort(tokens, kind='stable')
  ordered = tokens[order]
  equal = ordered[1:] == ordered[:-1]
  left, right = order[:-1][equal], order[1:][equal]
  pairs = (left < len(old_tokens)) & (right >= len(old_tokens))
  sources[right[pairs] - len(old_tokens)] = left[pairs]
  return sources


@dataclasses.dataclass
class RowMap:
  """Where each new row comes from, and what was kept, new and dropped.

  Attributes:
    sources: per new row, the base row it copies, or -1 (fresh).
    rows_kept: vocabulary (or id) rows copied from the base.
    rows_new: vocabulary (or id) rows with no base row.
    rows_dropped: base vocabulary (or id) rows with no new row.
    oov_buckets: 'kept', 'reinitialized' or 'none'.
  """

  sources: np.ndarray
  rows_kept: int
  rows_new: int
  rows_dropped: int
  oov_buckets: str = 'none'

  @classmethod
  def fresh(cls, rows: int) -> 'RowMap':
    return cls(np.full(rows, -1, dtype=np.int64), 0, rows, 0)


def map_rows(old: state_lib.TableRows, new: state_lib.TableRows) -> RowMap:
  """The row mapping of one table; both must have the same kind."""
  if old.kind != new.kind or new.kind == state_lib.KIND_UNKNOWN:
    raise ValueError(f'Rows of kind {old.kind!r} cannot map to {new.kind!r}.')
  if new.kind == state_lib.KIND_IDENTITY:
    kept = min(old.rows, new.rows)
    sources = np.full(new.rows, -1, dtype=np.int64)
    sources[:kept] = np.arange(kept)
    return RowMap(sources, kept, new.rows - kept, old.rows - kept)
  vocabulary = token_sources(old.tokens, new.tokens)
  oov = np.full(new.num_oov_buckets, -1, dtype=np.int64)
  status = 'none'
  if new.num_oov_buckets:
    status = 'reinitialized'
    if old.num_oov_buckets == new.num_oov_buckets:
      oov = len(old.tokens) + np.arange(new.num_oov_buckets)
      status = 'kept'
  kept = int(np.count_nonzero(vocabulary >= 0))
  return RowMap(np.concatenate([vocabulary, oov]), kept,
                len(new.tokens) - kept, len(old.tokens) - kept, status)


def remap(base_values: np.ndarray, fresh_values: np.ndarray,
          sources: np.ndarray) -> np.ndarray:
  """``fresh_values`` with each mapped row replaced by its base row."""
  result = np.array(fresh_values, copy=True)
  mapped = sources >= 0
  result[mapped] = base_values[sources[mapped]]
  return result


@dataclasses.dataclass
class TablePlan:
  """What happens to one table of the new spec."""
  rows: RowMap
  slots_kept: List[str]
  slots_fresh: List[str]
  status: str  # 'warm' or 'fresh'
  reason: str = ''


def _mismatch(table: str, what: str, on_mismatch: str, fallback: str) -> str:
  if on_mismatch == 'error':
    raise ValueError(
        f'Warm start: table {table!r} {what}. Train cold (no base_model), fix '
        'the spec, or set TrainingConfig.warm_start_on_mismatch="fresh" to '
        f'{fallback}.')
  logging.warning('Warm start: table %r %s; %s.', table, what, fallback)
  return what


def plan_table(base: state_lib.BaseModel, name: str, new_rows: state_lib.TableRows,
               dim: int, slots: List[str], on_mismatch: str) -> TablePlan:
  """Checks one table against the base and maps its rows (no values read)."""
  if name not in base.tables:
    logging.info('Warm start: table %r is new; it starts fresh.', name)
    return TablePlan(RowMap.fresh(new_rows.rows), [], slots, 'fresh',
                     'not in the base model')
  entry = base.tables[name]
  if entry['dim'] != dim:
    reason = _mismatch(name, f'changed dimension from {entry["dim"]} to {dim}',
                       on_mismatch, 'start it fresh')
    return TablePlan(RowMap.fresh(new_rows.rows), [], slots, 'fresh', reason)
  if entry['kind'] != new_rows.kind or new_rows.kind == state_lib.KIND_UNKNOWN:
    reason = (f'rows are {entry["kind"]!r} in the base, {new_rows.kind!r} now'
              if entry['kind'] != new_rows.kind else
              'mixes vocabularies, so its rows have no stable meaning')
    if entry['kind'] != new_rows.kind:
      reason = _mismatch(name, reason, on_mismatch, 'start it fresh')
    else:
      logging.warning('Warm start: table %r %s; it starts fresh.', name, reason)
    return TablePlan(RowMap.fresh(new_rows.rows), [], slots, 'fresh', reason)
  missing = [s for s in slots if s not in entry['slots']]
  reason = ''
  if missing:
    reason = _mismatch(
        name, f'trains with slots {missing} that the base optimizer '
        f'{entry["optimizer"]} does not have', on_mismatch,
        'keep its rows and start those slots fresh')
  rows = map_rows(base.rows(name), new_rows)
  return TablePlan(rows, [s for s in slots if s not in missing], missing,
                   'warm', reason)


def _staging_embedding(feature_config: Mapping[str, Any]) -> Any:
  """A CPU copy of the run's tables and slots, freshly initialized."""
  staging = cpu_embedding.CpuEmbedding(feature_config, validate_ids=False)
  staging.build()
  return staging


def _write_staged_tables(staging: Any, embedding: Any, engine: str,
                         path: str) -> str:
  """Writes the remapped tables and slots in the layout of the run's
  embedding; returns the checkpoint's path."""
  if engine != engines.V2:
    return tf.train.Checkpoint(embedding=staging).write(path)
  values = {table.name: {name: variable.numpy() for name, variable in
                         staging._table_variables(table).items()}  # pylint: disable=protected-access
            for table in staging.tables}
  return sparsecore_layouts.write_stacked_checkpoint(
      values, sparsecore_layouts.layouts_of(embedding), path)


def remap_tables(base: state_lib.BaseModel, feature_config: Mapping[str, Any],
                 new_rows: Mapping[str, state_lib.TableRows],
                 on_mismatch: str = 'error') -> Tuple[Any, Dict[str, TablePlan]]:
  """The run's tables and slots with the base's rows remapped into them.

  Returns a built ``CpuEmbedding`` of ``feature_config`` (fresh values by
  the tables' initializers and the optimizers' slot initializers, then the
  remapped rows) and the plan of each table.
  """
  staging = _staging_embedding(feature_config)
  plans = {}
  for table in staging.tables:
    variables = staging._table_variables(table)  # pylint: disable=protected-access
    slots = sorted(k for k in variables if k != 'parameters')
    plan = plan_table(base, table.name, new_rows[table.name], table.dim, slots,
                      on_mismatch)
    plans[table.name] = plan
    if plan.status != 'warm':
      continue
    for variable in ['parameters'] + plan.slots_kept:
      values = remap(base.values(table.name, variable),
                     variables[variable].numpy(), plan.rows.sources)
      variables[variable].assign(values)
  dropped = sorted(set(base.tables) - {t.name for t in staging.tables})
  if dropped:
    logging.info('Warm start: base tables %s are not in the spec; dropped.',
                 dropped)
  return staging, plans


def warm_id_shares(batches: Iterable[Any], resolved: Any,
                   plans: Mapping[str, TablePlan]) -> Dict[str, float]:
  """Per table, the share of the ids in ``batches`` that hit a warm row.

  ``batches`` are the training input's ``(ids, weights, dense, labels)``
  with ids per feature key; every id counts (sequence ids past
  ``max_sequence_length`` included).
  """
  warm = {name: plan.rows.sources >= 0 for name, plan in plans.items()}
  hits = {name: 0 for name in plans}
  totals = {name: 0 for name in plans}
  for ids, *_ in batches:
    for key, feature in resolved.features.items():
      values = ids[key].values.numpy() if hasattr(ids[key], 'values') else (
          np.asarray(ids[key]).ravel())
      table = feature.table_name
      hits[table] += int(np.count_nonzero(warm[table][values]))
      totals[table] += values.size
  return {name: hits[name] / totals[name] if totals[name] else 0.0
          for name in plans}


def _zero_inputs(resolved: Any, dense_keys: List[str]) -> Dict[str, Any]:
  """A one-row input of the model contract, to build the dense model."""
  embeddings = {}
  for key, feature in resolved.features.items():
    shape = [1, feature.dimension]
    if feature.is_sequence:
      shape.insert(1, feature.max_sequence_length)
    embeddings[key] = tf.zeros(shape)
  return {'embeddings': embeddings,
          'features': {key: tf.zeros([1]) for key in dense_keys}}


def _model_variable_shapes(model: Any, scratch_dir: str) -> Dict[str, List[int]]:
  path = tf.train.Checkpoint(model=model).write(
      os.path.join(scratch_dir, 'dense'))
  return state_lib.dense_variable_shapes(path)


def dense_differences(base: Mapping[str, List[int]],
                      current: Mapping[str, List[int]]) -> List[str]:
  """What changed between two ``{variable: shape}`` maps, for the message."""
  changes = [f'{k} is new' for k in sorted(set(current) - set(base))]
  changes += [f'{k} is gone' for k in sorted(set(base) - set(current))]
  changes += [f'{k} changed shape {base[k]} -> {current[k]}'
              for k in sorted(set(base) & set(current))
              if list(base[k]) != list(current[k])]
  return changes


def restore_dense(base: state_lib.BaseModel, model: Any, resolved: Any,
                  dense_keys: List[str], scratch_dir: str) -> None:
  """Builds the model and restores its variables from the base, if they match.

  Raises:
    ValueError: naming the variables that are new, gone or reshaped.
  """
  model(_zero_inputs(resolved, dense_keys), training=False)
  changes = dense_differences(base.manifest['dense_variables'],
                              _model_variable_shapes(model, scratch_dir))
  if changes:
    shown = '; '.join(changes[:8]) + ('; ...' if len(changes) > 8 else '')
    raise ValueError(
        f'Warm start: the dense model differs from the base model\'s '
        f'({len(changes)} changes: {shown}). Restore the model_fn, or set '
        'TrainingConfig.warm_start_dense=False to warm-start the tables only.')
  tf.train.Checkpoint(model=model).read(
      base.checkpoint).expect_partial().assert_existing_objects_matched()


def report(base_uri: str, plans: Mapping[str, TablePlan],
           shares: Mapping[str, float], dense: str,
           dropped_tables: List[str]) -> Dict[str, Any]:
  """The JSON-ready summary of a warm start (``TrainingResult.warm_start``)."""
  tables = {}
  for name, plan in plans.items():
    tables[name] = dict(
        status=plan.status, reason=plan.reason,
        rows_kept=plan.rows.rows_kept, rows_new=plan.rows.rows_new,
        rows_dropped=plan.rows.rows_dropped, oov_buckets=plan.rows.oov_buckets,
        slots_kept=plan.slots_kept, slots_fresh=plan.slots_fresh,
        warm_id_share=round(float(shares.get(name, 0.0)), 6))
  return dict(base_model=base_uri, dense=dense, tables=tables,
              tables_dropped=dropped_tables,
              warm_id_share_batches=HIT_SAMPLE_BATCHES)


def _log(result: Mapping[str, Any], log_dir: str) -> None:
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default(step=0):
    for name, table in result['tables'].items():
      logging.info(
          'Warm start of table %r: %s, rows kept %d, new %d, dropped %d, OOV '
          'buckets %s, fresh slots %s, %.1f%% of training ids hit warm rows.',
          name, table['status'], table['rows_kept'], table['rows_new'],
          table['rows_dropped'], table['oov_buckets'], table['slots_fresh'],
          100 * table['warm_id_share'])
      for key in ('rows_kept', 'rows_new', 'rows_dropped', 'warm_id_share'):
        tf.summary.scalar(f'warm_start/{name}/{key}', table[key])
  writer.flush()
  logging.info('Warm start from %s; dense model: %s.', result['base_model'],
               result['dense'])


def apply(base_uri: str, embedding: Any, model: Any, resolved: Any,
          feature_config: Mapping[str, Any], dense_keys: List[str],
          new_rows: Mapping[str, state_lib.TableRows], run_dir: str,
          log_dir: str, engine: str = 'cpu', warm_start_dense: bool = True,
          on_mismatch: str = 'error',
          sample_batches: Optional[Iterable[Any]] = None,
          strategy: Optional[Any] = None) -> Dict[str, Any]:
  """Warm-starts a fresh run's embedding and model from ``base_uri``.

  Call before step 0, never on a run that resumes from its own checkpoint.

  Args:
    base_uri: the base Model artifact's URI (or its ``warm_start`` folder).
    embedding: the run's embedding (``CpuEmbedding`` or a TPU engine's),
      whose variables may not be built yet.
    model: the run's dense model (built here on zeros when restored).
    resolved: the run's ``ResolvedEmbeddingSpec``.
    feature_config: ``resolved.compile(...)``, as the embedding was built.
    dense_keys: the dense features the model reads.
    new_rows: ``warm_start_state.table_rows`` of this run.
    run_dir: the remapped tables are staged under ``run_dir/warm_start``.
    log_dir: TensorBoard folder for the ``warm_start/`` scalars.
    engine: 'cpu', 'v0', 'v1' or 'v2' (stacked SparseCore tables).
    warm_start_dense: restore the dense model too.
    on_mismatch: 'error' or 'fresh' (see the module doc).
    sample_batches: training batches for the warm-id share (the first
      ``HIT_SAMPLE_BATCHES`` are read).
    strategy: the run's distribution strategy; the dense model is built
      under its scope.

  Returns:
    The report (see ``report``).
  """
  if on_mismatch not in ON_MISMATCH:
    raise ValueError(f'warm_start_on_mismatch must be one of {ON_MISMATCH}, '
                     f'got {on_mismatch!r}.')
  base = state_lib.BaseModel.load(base_uri)
  staging, plans = remap_tables(base, feature_config, new_rows, on_mismatch)
  staging_dir = os.path.join(run_dir, STAGING_DIR)
  path = _write_staged_tables(staging, embedding, engine,
                              os.path.join(staging_dir, 'tables'))
  # Deferred restoration: variables not yet built get these values when
  # they are, and a TPU engine loads them onto the TPU then.
  tf.train.Checkpoint(embedding=embedding).read(path).expect_partial()
  dense = 'not restored (warm_start_dense=False)'
  if warm_start_dense:
    with (strategy or tf.distribute.get_strategy()).scope():
      restore_dense(base, model, resolved, dense_keys, staging_dir)
    dense = 'restored'
  shares = {}
  if sample_batches is not None:
    shares = warm_id_shares(
        (batch for _, batch in zip(range(HIT_SAMPLE_BATCHES), sample_batches)),
        resolved, plans)
  result = report(base_uri, plans, shares, dense,
                  sorted(set(base.tables) - set(plans)))
  _log(result, log_dir)
  with tf.io.gfile.GFile(os.path.join(staging_dir, REPORT_FILE), 'w') as f:
    f.write(json.dumps(result, indent=2, sort_keys=True))
  return result


def load_report(run_dir: str) -> Dict[str, Any]:
  """The report a warm start wrote in ``run_dir`` ({} if none): a run that
  resumed after a crash reports the warm start it began with."""
  path = os.path.join(run_dir, STAGING_DIR, REPORT_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


@dataclasses.dataclass
class Source:
  """A base model to warm-start from, with this run's table rows.

  Built by ``training.run_training`` (which has the Transform output);
  ``loop.train`` calls ``apply_to`` on a fresh run.
  """

  base_uri: str
  rows: Mapping[str, state_lib.TableRows]

  def apply_to(self, backend: Any, model: Any, resolved: Any,
               dense_keys: List[str], config: Any, run_dir: str,
               log_dir: str, sample_batches: Iterable[Any]) -> Dict[str, Any]:
    """``apply`` with the loop's backend and config."""
    return apply(self.base_uri, backend.embedding, model, resolved,
                 resolved.compile(tf.Variable(0, dtype=tf.int64)), dense_keys,
                 self.rows, run_dir, log_dir, engine=backend.engine,
                 warm_start_dense=config.warm_start_dense,
                 on_mismatch=config.warm_start_on_mismatch,
                 sample_batches=sample_batches, strategy=backend.strategy)
