"""What a trained Model keeps so that the next run can warm-start from it.

Under the Model artifact, ``warm_start/`` holds:

* ``checkpoint/ckpt.*``: a copy of the run's final training checkpoint (the
  tables with their optimizer slots and the dense model; one variable per
  table as the CPU, V0 and V1 paths save them, or V2's stacked variables);
* ``vocabularies/<table>.txt``: the token of each vocabulary row of a table,
  one per line, in row order (the OOV buckets follow them);
* ``manifest.json``: per table its rows, dimension, kind ('vocabulary',
  'identity' or 'unknown'), OOV buckets, optimizer and slot names and
  checkpoint keys (under ``stacked``, with its SparseCore layout, for a table
  of a V2 stack: ``sparsecore_layouts``); the dense model's variables and
  their shapes.

``BaseModel.load`` reads it back, for ``warm_start.apply``.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from components.embedding import categorical
from components.embedding import ids
from components.trainer import sparsecore_layouts

STATE_DIR = 'warm_start'
MANIFEST_FILE = 'manifest.json'
VOCABULARY_DIR = 'vocabularies'
CHECKPOINT_PREFIX = os.path.join('checkpoint', 'ckpt')
FORMAT_VERSION = 1
KIND_VOCABULARY = ids.ROWS_VOCABULARY
KIND_IDENTITY = ids.ROWS_IDENTITY
KIND_UNKNOWN = 'unknown'
STACKED_KEY = 'stacked'
_VOCABULARY_KINDS = (categorical.TransformVocabularyColumn.KIND,
                     categorical.VocabularyListColumn.KIND,
                     categorical.VocabularyFileColumn.KIND)
_VALUE = '.ATTRIBUTES/VARIABLE_VALUE'


@dataclasses.dataclass
class TableRows:
  """What each row of a table stands for.

  Attributes:
    kind: 'vocabulary' (row i < len(tokens) is tokens[i], then the OOV
      buckets), 'identity' (row i is id i) or 'unknown' (no stable meaning
      across runs: features with different vocabularies share the table).
    rows: rows of the table.
    num_oov_buckets: rows after the vocabulary tokens.
    tokens: the tokens (bytes, numpy 'S' array) of a vocabulary table.
  """

  kind: str
  rows: int
  num_oov_buckets: int = 0
  tokens: Optional[np.ndarray] = None


def _as_bytes(token: Any) -> bytes:
  return token if isinstance(token, bytes) else str(token).encode('utf-8')


def _vocabulary_source(feature: Any) -> Any:
  """What names a feature's vocabulary (equal sources: equal vocabularies)."""
  column = feature.column
  if column.KIND == 'transform_vocabulary':
    return ('transform', column.vocabulary_name)
  if column.KIND == 'vocabulary_list':
    return ('list', tuple(column.vocabulary_list))
  return ('file', column.vocabulary_file)


def _tokens(feature: Any, transform_output: Any) -> List[bytes]:
  column = feature.column
  if column.KIND == 'transform_vocabulary':
    tokens = transform_output.vocabulary_by_name(column.vocabulary_name)
  elif column.KIND == 'vocabulary_list':
    tokens = column.vocabulary_list
  else:
    with tf.io.gfile.GFile(column.vocabulary_file, 'rb') as f:
      tokens = f.read().splitlines()
  return [_as_bytes(t) for t in tokens]


def table_rows(resolved: Any, transform_output: Any) -> Dict[str, TableRows]:
  """Per table of a resolved spec, what its rows stand for.

  Shared tables follow their shared vocabulary; a table whose features use
  different vocabularies (or mix identity and vocabulary columns) is
  'unknown' and is never remapped.
  """
  by_table: Dict[str, List[Any]] = {}
  for feature in resolved.features.values():
    by_table.setdefault(feature.table_name, []).append(feature)
  result = {}
  for name, table in resolved.tables.items():
    features = by_table.get(name, [])
    kinds = {f.kind for f in features}
    rows = table.vocabulary_size
    if kinds == {categorical.IdentityColumn.KIND}:
      result[name] = TableRows(KIND_IDENTITY, rows)
      continue
    sources = {_vocabulary_source(f) for f in features
               if f.kind in _VOCABULARY_KINDS}
    oov = {f.num_oov_buckets for f in features}
    if not kinds <= set(_VOCABULARY_KINDS) or len(sources) != 1 or len(oov) != 1:
      result[name] = TableRows(KIND_UNKNOWN, rows)
      continue
    num_oov = oov.pop()
    tokens = _tokens(features[0], transform_output)[:rows - num_oov]
    if len(tokens) + num_oov != rows:
      raise ValueError(
          f'Table {name!r} has {rows} rows but its vocabulary has '
          f'{len(tokens)} tokens and {num_oov} OOV buckets.')
    result[name] = TableRows(KIND_VOCABULARY, rows, num_oov,
                             np.array(tokens, dtype=np.bytes_))
  return result


def checkpoint_key(table: str, slot: Optional[str] = None) -> str:
  """The key of a table (or one of its slots) in a training checkpoint.

  ``TPUEmbedding`` and ``TPUEmbeddingForServing`` name the variables
  ``<table>`` and ``<table>/<slot>`` under the checkpoint's ``embedding``;
  object-based checkpoints escape '.' as '..' and '/' as '.S' in names.
  """
  name = table if slot is None else f'{table}/{slot}'
  return f"embedding/{name.replace('.', '..').replace('/', '.S')}/{_VALUE}"


def sparse_core_layouts(reader: Any) -> Dict[str, sparsecore_layouts.TableLayout]:
  """{table: layout} of the tables a V2 (SparseCore) checkpoint holds stacked;
  empty for other checkpoints (``reader``: ``tf.train.load_checkpoint``)."""
  return sparsecore_layouts.layouts_in(
      reader, checkpoint_key(sparsecore_layouts.LAYOUTS_KEY))


def stored_table_name(table: str,
                      stacked: Mapping[str, sparsecore_layouts.TableLayout]
                     ) -> str:
  """The name a checkpoint keeps ``table``'s values under: its stack's where
  ``stacked`` (``sparse_core_layouts``) records one, else its own."""
  layout = stacked.get(table)
  return layout.stacked_table_name if layout else table


def dense_variable_shapes(checkpoint_path: str) -> Dict[str, List[int]]:
  """The dense model's variables (not its optimizer slots) and their shapes."""
  return {
      name: list(shape)
      for name, shape in tf.train.list_variables(checkpoint_path)
      if name.startswith('model/') and name.endswith(_VALUE) and
      '.OPTIMIZER_SLOT' not in name}


def _copy_checkpoint(checkpoint_path: str, prefix: str) -> None:
  tf.io.gfile.makedirs(os.path.dirname(prefix))
  for path in tf.io.gfile.glob(checkpoint_path + '.*'):
    suffix = path[len(checkpoint_path):]
    tf.io.gfile.copy(path, prefix + suffix, overwrite=True)


def _line_break_token(tokens: np.ndarray) -> Optional[bytes]:
  """A token that a one-token-per-line file cannot hold, if any."""
  for token in tokens.tolist():
    if b'\n' in token or b'\r' in token:
      return token
  return None


def _write_vocabulary(path: str, tokens: np.ndarray) -> None:
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(b''.join(t + b'\n' for t in tokens.tolist()))


def save_state(state_dir: str, resolved: Any, transform_output: Any,
               checkpoint_path: str) -> Optional[str]:
  """Writes ``state_dir`` (see the module doc) from a final checkpoint.

  Returns the manifest's path, or None (logged) when the checkpoint lacks a
  table or one of its slots (neither its own variable nor, with a recorded
  SparseCore layout, its stack's) or a token holds a line break: that model
  cannot be a base model (``BaseModel.load`` says so).
  """
  reader = tf.train.load_checkpoint(checkpoint_path)
  stacked = sparse_core_layouts(reader)
  rows = table_rows(resolved, transform_output)
  optimizer = resolved.compile_optimizer(tf.Variable(0, dtype=tf.int64))
  slots = list(optimizer._slot_names())  # pylint: disable=protected-access
  tables = {}
  for name, table in resolved.tables.items():
    layout = stacked.get(name)
    stored = stored_table_name(name, stacked)
    keys = {'parameters': checkpoint_key(stored)}
    keys.update({slot: checkpoint_key(stored, slot) for slot in slots})
    missing = sorted(k for k in keys.values() if not reader.has_tensor(k))
    if missing:
      logging.warning('No warm-start state written: the checkpoint %s lacks '
                      '%s of table %r.', checkpoint_path, missing, name)
      return None
    entry = dict(rows=table.vocabulary_size, dim=table.dimension,
                 kind=rows[name].kind,
                 num_oov_buckets=rows[name].num_oov_buckets,
                 optimizer=type(resolved.optimizer).__name__, slots=slots)
    if layout:
      # Another key than own-layout tables', so that a reader unaware of
      # stacks fails rather than reads a stack as the table.
      entry[STACKED_KEY] = dict(checkpoint_keys=keys,
                                layout=dataclasses.asdict(layout))
    else:
      entry['checkpoint_keys'] = keys
    if rows[name].kind == KIND_VOCABULARY:
      token = _line_break_token(rows[name].tokens)
      if token is not None:
        logging.warning('No warm-start state written: table %r has the token '
                        '%r, whose line break a vocabulary file cannot hold.',
                        name, token)
        return None
      entry['vocabulary'] = os.path.join(VOCABULARY_DIR, f'{name}.txt')
    tables[name] = entry
  prefix = os.path.join(state_dir, CHECKPOINT_PREFIX)
  _copy_checkpoint(checkpoint_path, prefix)
  tf.io.gfile.makedirs(os.path.join(state_dir, VOCABULARY_DIR))
  for name, entry in tables.items():
    if 'vocabulary' in entry:
      _write_vocabulary(os.path.join(state_dir, entry['vocabulary']),
                        rows[name].tokens)
  manifest = dict(format_version=FORMAT_VERSION, checkpoint=CHECKPOINT_PREFIX,
                  tables=tables,
                  dense_variables=dense_variable_shapes(checkpoint_path))
  path = os.path.join(state_dir, MANIFEST_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(json.dumps(manifest, indent=2, sort_keys=True))
  logging.info('Warm-start state written to %s', state_dir)
  return path


class BaseModel:
  """A trained model's warm-start state, read back from its Model artifact."""

  def __init__(self, state_dir: str, manifest: Mapping[str, Any]):
    self.state_dir = state_dir
    self.manifest = manifest
    self.checkpoint = os.path.join(state_dir, manifest['checkpoint'])
    self._reader = tf.train.load_checkpoint(self.checkpoint)

  @classmethod
  def load(cls, uri: str) -> 'BaseModel':
    """From a Model artifact's URI (or its ``warm_start`` folder)."""
    for state_dir in (os.path.join(uri, STATE_DIR), uri):
      path = os.path.join(state_dir, MANIFEST_FILE)
      if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
          manifest = json.load(f)
        if manifest.get('format_version') != FORMAT_VERSION:
          raise ValueError(
              f'Base model {uri}: warm-start format '
              f'{manifest.get("format_version")!r}, this trainer reads '
              f'{FORMAT_VERSION}.')
        return cls(state_dir, manifest)
    raise ValueError(
        f'Base model {uri} has no {STATE_DIR}/{MANIFEST_FILE}: it was not '
        'trained by TpuEmbeddingTrainer with warm-start state (or its '
        'checkpoint lacked a table, as a V2 checkpoint without its '
        'SparseCore layouts does). Train it again, or start cold without '
        'base_model.')

  @property
  def tables(self) -> Mapping[str, Mapping[str, Any]]:
    return self.manifest['tables']

  def rows(self, table: str) -> TableRows:
    """What each row of the base table stands for."""
    entry = self.tables[table]
    tokens = None
    if entry['kind'] == KIND_VOCABULARY:
      with tf.io.gfile.GFile(os.path.join(self.state_dir,
                                          entry['vocabulary']), 'rb') as f:
        tokens = np.array(f.read().splitlines(), dtype=np.bytes_)
    return TableRows(entry['kind'], entry['rows'], entry['num_oov_buckets'],
                     tokens)

  def values(self, table: str, variable: str = 'parameters') -> np.ndarray:
    """The base table ('parameters') or one of its slots, as numpy."""
    entry = self.tables[table]
    if STACKED_KEY not in entry:
      return self._reader.get_tensor(entry['checkpoint_keys'][variable])
    stacked = entry[STACKED_KEY]
    return sparsecore_layouts.unstack(
        self._reader.get_tensor(stacked['checkpoint_keys'][variable]),
        sparsecore_layouts.TableLayout(**stacked['layout']))
