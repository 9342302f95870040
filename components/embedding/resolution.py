"""Resolution: table sizes and sequence lengths made concrete.

Sizes come from the columns themselves, from vocabulary files, or from the
Transform output for Transform-vocabulary columns. `max_sequence_length='auto'`
comes from the statistics component's `{feature_key: recommended_length}`.

How a Transform-vocabulary column is sized. `tft.compute_and_apply_vocabulary`
and `tft.apply_vocabulary` annotate their output with a schema override that
TFT writes into the transformed schema as the feature's `int_domain`
(`TFTransformOutput.transformed_domains()[key]`, for dense, sparse and ragged
outputs alike; checked with a real `AnalyzeAndTransformDataset` run):
  * `num_oov_buckets=k > 0`: `min=0`, `max=vocabulary_size + k - 1`;
  * `num_oov_buckets=0`, `default_value=-1` (the default): `min=-1`,
    `max=vocabulary_size - 1`;
  * `num_oov_buckets=0`, `default_value=d >= 0`: `min=0`,
    `max=max(vocabulary_size - 1, d)`.
The table therefore has `int_domain.max + 1` rows, and the number of OOV
buckets is `int_domain.max + 1 - vocabulary_size_by_name(vocabulary_name)`
(a `default_value` past the vocabulary counts as OOV rows). `min=-1` means
unseen tokens get id -1: they are ignored by the lookup (as TensorFlow's
feature columns ignore a -1 `default_value`) and a warning suggests
`num_oov_buckets >= 1`.
"""

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from components.embedding import categorical
from components.embedding import columns as columns_lib
from components.embedding import oov
from components.embedding import optimizers
from components.embedding import resolved


def _count_lines(path: str, key: str) -> int:
  """Counts the lines of a vocabulary file (any tf.io.gfile filesystem)."""
  if not tf.io.gfile.exists(path):
    raise ValueError(f'vocabulary_file {path!r} of column {key!r} does not '
                     'exist; give an existing file or its vocabulary_size.')
  with tf.io.gfile.GFile(path, 'rb') as f:
    return sum(1 for _ in f)


def transform_vocabulary_size(column: categorical.TransformVocabularyColumn,
                              tf_transform_output: Any
                             ) -> Tuple[int, int, Optional[int]]:
  """Returns (table rows, OOV buckets, id of unknown tokens or None).

  See the module docstring for how the Transform output is read.

  Raises:
    ValueError: when the vocabulary or the feature's integer domain is
      missing, or the domain does not fit the vocabulary.
  """
  key, name = column.key, column.vocabulary_name
  try:
    vocab_size = int(tf_transform_output.vocabulary_size_by_name(name))
  except Exception as e:  # TFT raises several types for a missing file.
    raise ValueError(
        f'Column {key!r}: the Transform output has no vocabulary named '
        f'{name!r} ({e}). Use the vocab_filename given to '
        'tft.compute_and_apply_vocabulary / tft.vocabulary.') from e
  domain = tf_transform_output.transformed_domains().get(key)
  if not isinstance(domain, schema_pb2.IntDomain):
    raise ValueError(
        f'Column {key!r}: the transformed feature {key!r} has no integer '
        'domain in the Transform output schema, so its OOV buckets are '
        'unknown. The key must be the direct output of '
        'tft.compute_and_apply_vocabulary or tft.apply_vocabulary. Features '
        f'with a domain: {sorted(tf_transform_output.transformed_domains())}.')
  rows = int(domain.max) + 1
  if rows < vocab_size or domain.min < -1:
    raise ValueError(
        f'Column {key!r}: the ids of {key!r} span [{domain.min}, '
        f'{domain.max}], which does not fit vocabulary {name!r} of '
        f'{vocab_size} tokens; is {key!r} produced from that vocabulary?')
  if rows < 1:
    raise ValueError(f'Column {key!r}: vocabulary {name!r} is empty.')
  if domain.min == -1:
    logging.warning(
        'Feature %r: tokens unseen by vocabulary %r get id -1 and are '
        'ignored by the embedding lookup; set num_oov_buckets >= 1 in '
        'tft.compute_and_apply_vocabulary to learn embeddings for them.',
        key, name)
    return rows, rows - vocab_size, -1
  return rows, rows - vocab_size, None


def _size(column: categorical.CategoricalColumn,
          tf_transform_output: Any) -> Tuple[int, int, Optional[int]]:
  """Returns (table rows, OOV buckets, default id) of a base column."""
  if isinstance(column, categorical.IdentityColumn):
    return column.number_buckets, 0, column.default_value
  if isinstance(column, categorical.VocabularyListColumn):
    default = None if column.num_oov_buckets else column.default_value
    return column.num_buckets, column.num_oov_buckets, default
  if isinstance(column, categorical.VocabularyFileColumn):
    size = column.vocabulary_size or _count_lines(column.vocabulary_file,
                                                  column.key)
    rows = size + column.num_oov_buckets
    if column.default_value >= rows:
      raise ValueError(
          f'default_value {column.default_value} of column {column.key!r} is '
          f'outside the table rows [0, {rows}).')
    default = None if column.num_oov_buckets else column.default_value
    return rows, column.num_oov_buckets, default
  if tf_transform_output is None:
    raise ValueError(
        f'Column {column.key!r} uses Transform vocabulary '
        f'{column.vocabulary_name!r}: pass tf_transform_output='
        'tft.TFTransformOutput(<transform graph dir>) to resolve().')
  return transform_vocabulary_size(column, tf_transform_output)


def _sequence_length(column: columns_lib.EmbeddingColumn,
                     lengths: Optional[Mapping[str, int]]) -> int:
  """Returns the column's max_sequence_length, resolving 'auto'."""
  if column.max_sequence_length != columns_lib.AUTO:
    return column.max_sequence_length
  key = column.feature_key
  if lengths is None or key not in lengths:
    known = sorted(lengths) if lengths is not None else None
    raise ValueError(
        f"Sequence column {key!r} has max_sequence_length='auto' but no "
        f'recommended length was given for {key!r} (lengths given for: '
        f'{known}). Pass max_sequence_lengths={{{key!r}: n}} (from the '
        'statistics component) to resolve(), or declare an int.')
  length = lengths[key]
  if isinstance(length, bool) or not isinstance(length, int) or length < 1:
    raise ValueError(f'The recommended max_sequence_length of {key!r} must be '
                     f'an int > 0, got {length!r}.')
  return length


def _resolve_feature(column: columns_lib.EmbeddingColumn, tf_transform_output,
                     lengths) -> resolved.ResolvedFeature:
  base = column.categorical_column.base
  rows, oov, default = _size(base, tf_transform_output)
  return resolved.ResolvedFeature(
      feature_key=column.feature_key,
      weight_key=column.categorical_column.weight_key,
      table_name=column.resolved_table_name,
      vocabulary_size=rows,
      num_oov_buckets=oov,
      dimension=column.dimension,
      combiner=None if column.is_sequence else column.combiner,
      is_sequence=column.is_sequence,
      max_sequence_length=_sequence_length(column, lengths),
      kind=base.KIND,
      default_value=default,
      validate_weights_and_indices=column.use_safe_embedding_lookup,
      column=base)


def _oov_rows(name: str, keys: Sequence[str], oov_mode: str,
              features: Mapping[str, resolved.ResolvedFeature]) -> int:
  """The OOV rows of a table: the most any of its features has.

  A shared table's features share one vocabulary, hence one OOV range.
  """
  count = max(features[k].num_oov_buckets for k in keys)
  if oov_mode != oov.RANDOM and not count:
    logging.warning(
        'Table %r has no OOV rows (its features %s have no OOV buckets), so '
        'oov_rows=%r changes nothing there.', name, list(keys), oov_mode)
  return count


def _resolve_table(name: str, members: List[columns_lib.EmbeddingColumn],
                   features: Mapping[str, resolved.ResolvedFeature],
                   oov_mode: str = oov.RANDOM) -> resolved.ResolvedTable:
  sizes = {c.feature_key: features[c.feature_key].vocabulary_size
           for c in members}
  if len(set(sizes.values())) > 1:
    raise ValueError(
        f'Shared table {name!r}: all columns must have the same vocabulary '
        f'size (OOV buckets included); got {sizes}. Use one vocabulary for '
        'all of them, or separate tables.')
  first = members[0]
  keys = tuple(c.feature_key for c in members)
  return resolved.ResolvedTable(
      name=name,
      vocabulary_size=next(iter(sizes.values())),
      dimension=first.dimension,
      combiner=first.combiner,
      initializer=first.initializer,
      learning_rate_fn=first.learning_rate_fn,
      feature_keys=keys,
      num_oov_rows=_oov_rows(name, keys, oov_mode, features),
      oov_rows=oov_mode)


def resolve_columns(columns: Sequence[columns_lib.EmbeddingColumn],
                    optimizer: optimizers.EmbeddingOptimizer,
                    tf_transform_output: Any = None,
                    max_sequence_lengths: Optional[Mapping[str, int]] = None,
                    oov_rows: Callable[[str], str] = lambda table: oov.RANDOM
                   ) -> resolved.ResolvedEmbeddingSpec:
  """Resolves validated columns (see `EmbeddingSpec.resolve`).

  `oov_rows(table_name)` gives each table's OOV mode (see `oov`).
  """
  features: Dict[str, resolved.ResolvedFeature] = {}
  groups: Dict[str, List[columns_lib.EmbeddingColumn]] = {}
  for column in columns:
    features[column.feature_key] = _resolve_feature(
        column, tf_transform_output, max_sequence_lengths)
    groups.setdefault(column.resolved_table_name, []).append(column)
  tables = {name: _resolve_table(name, members, features, oov_rows(name))
            for name, members in groups.items()}
  return resolved.ResolvedEmbeddingSpec(features, tables, optimizer)
