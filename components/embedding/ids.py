"""Mapping of input features to table row ids, shared by the CPU and TPU paths.

`IdMapper(features)(inputs)` takes the input features dict (`tf.SparseTensor`,
`tf.RaggedTensor` or dense tensors of strings or integers) and returns
`(ids, weights)`: per feature key an int64 `tf.SparseTensor` of shape
`[batch, None]`, and per feature key the float32 weights as a
`tf.SparseTensor` with the same indices (None for unweighted features). Both
dicts feed `TPUEmbedding.enqueue(ids, weights=weights)` or the CPU lookup.

Rules, as TensorFlow's feature columns apply them:
  * dense inputs lose their padding ('' for strings, -1 for integers); a
    rank-1 dense input is one id per row;
  * vocabulary-list/-file columns look tokens up with `tf.lookup`: the
    vocabulary position, else an OOV bucket (`StaticVocabularyTable`, the
    hashing of `tf.feature_column` and TFT), else `default_value`;
  * identity columns keep ids in `[0, num_buckets)`; an id outside maps to
    `default_value` when one is given, and otherwise fails with
    `tf.errors.InvalidArgumentError` naming the feature and the range;
  * Transform-vocabulary ids pass through, checked against the table range;
  * the id -1 of a vocabulary column without OOV buckets (`default_value=-1`)
    means "unknown token": it is dropped together with its weight, as
    TensorFlow's embedding lookups drop negative ids.
No other id is ever dropped or clamped.

Where an id is dropped inside a row (an unknown token between known ones, or
-1 padding in the middle of a dense row), the positions of what remains
follow TensorFlow:
  * non-sequence (bag) features: the remaining ids are renumbered 0, 1, ...
    within their row, so that every row is right-ragged; the combiner then
    reduces only the remaining ids (`tf.nn.safe_embedding_lookup_sparse`
    prunes negative ids the same way), and a row left empty embeds to zeros;
  * sequence features keep every remaining id at its position: the dropped
    position embeds to a zero vector and later ids do not shift left. This is
    what TF 1.15's sequence feature columns do (`EmbeddingColumn.
    get_sequence_dense_tensor` looks up the `[batch, T, 1]` ids with
    `safe_embedding_lookup_sparse`, which zeroes the pruned position, and the
    sequence length still counts it), what `serving_embedding_lookup` does
    (it scatters each id to its `[row, position]` index) and what the TPU
    enqueue does with the same sparse indices.
The dense shape of the ids is that of the input in both cases.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from components.embedding import categorical

# What a table row means, for the parts that compare rows across runs or
# splits (embedding statistics, warm start): a vocabulary token, or an id
# used as it is.
ROWS_VOCABULARY = 'vocabulary'
ROWS_IDENTITY = 'identity'

SparseIds = Dict[str, tf.SparseTensor]
SparseWeights = Dict[str, Optional[tf.SparseTensor]]


def _to_sparse(value: Any, key: str) -> tf.SparseTensor:
  """Returns `value` as a rank-2 SparseTensor, dropping dense padding."""
  if isinstance(value, tf.RaggedTensor):
    if value.shape.rank != 2:
      raise ValueError(f'Feature {key!r}: ragged input must have rank 2 '
                       f'[batch, None], got shape {value.shape}.')
    return value.to_sparse()
  if isinstance(value, tf.SparseTensor):
    if value.shape.rank not in (None, 2):
      raise ValueError(f'Feature {key!r}: sparse input must have rank 2, got '
                       f'shape {value.shape}.')
    return value
  dense = tf.convert_to_tensor(value)
  if dense.shape.rank == 1:
    dense = tf.expand_dims(dense, -1)
  if dense.shape.rank != 2:
    raise ValueError(f'Feature {key!r}: dense input must have rank 1 or 2, '
                     f'got shape {dense.shape}.')
  padding = '' if dense.dtype == tf.string else tf.cast(-1, dense.dtype)
  indices = tf.where(tf.not_equal(dense, padding))
  return tf.SparseTensor(indices, tf.gather_nd(dense, indices),
                         tf.shape(dense, out_type=tf.int64))


def _weights_like(value: Any, ids: tf.SparseTensor, key: str,
                  weight_key: str) -> tf.SparseTensor:
  """Returns the weights of `weight_key` at the indices of `ids`, float32."""
  if isinstance(value, (tf.SparseTensor, tf.RaggedTensor)):
    weights = _to_sparse(value, weight_key)
    check = tf.debugging.assert_equal(
        weights.indices, ids.indices,
        message=f'Weights `{weight_key}` of feature `{key}` must have the '
        'same indices as the ids.')
    with tf.control_dependencies([check]):
      values = tf.identity(weights.values)
  else:
    dense = tf.convert_to_tensor(value)
    if dense.shape.rank == 1:
      dense = tf.expand_dims(dense, -1)
    values = tf.gather_nd(dense, ids.indices)
  return tf.SparseTensor(ids.indices, tf.cast(values, tf.float32),
                         ids.dense_shape)


def _range_message(key: str, size: int) -> str:
  return (f'Feature `{key}` has ids outside the table range [0, {size}); '
          'fix the input, or give the column a default_value or OOV '
          'buckets.')


def _check_ranges(values: Sequence[tf.Tensor], sizes: Sequence[int],
                  keys: Sequence[str]) -> List[tf.Tensor]:
  """Returns `values`, raising InvalidArgumentError for ids outside [0, size).

  One check covers every feature of a batch: per feature the largest id read
  as unsigned (a negative id wraps to a huge value, so one bound covers both
  ends), one comparison with the table sizes and one `Assert` whose message
  names the features out of range. Two asserts per feature cost about ten
  ops and two conditionals each: on the demo's 8 features the single check
  takes about a third off the host time of the id mapping.
  """
  if not values:
    return []
  largest = tf.stack([tf.reduce_max(tf.bitcast(v, tf.uint64)) for v in values])
  in_range = tf.less(largest, tf.constant(list(sizes), tf.uint64))
  messages = tf.constant([_range_message(k, s) for k, s in zip(keys, sizes)])
  # String-only data: the Assert runs directly, without a conditional.
  check = tf.debugging.Assert(
      tf.reduce_all(in_range),
      [tf.boolean_mask(messages, tf.logical_not(in_range))],
      summarize=len(values))
  with tf.control_dependencies([check]):
    return [tf.identity(v) for v in values]


def _check_dtype(tensor: tf.SparseTensor, key: str, want_string: bool) -> None:
  dtype = tensor.dtype
  if want_string and dtype != tf.string:
    raise ValueError(f'Feature {key!r} must hold strings for its vocabulary, '
                     f'got {dtype.name}.')
  if not want_string and not dtype.is_integer:
    raise ValueError(f'Feature {key!r} must hold integer ids, got '
                     f'{dtype.name}.')


def _vocabulary_initializer(column: categorical.CategoricalColumn,
                            key_dtype: tf.DType) -> Any:
  if isinstance(column, categorical.VocabularyListColumn):
    keys = tf.constant(list(column.vocabulary_list), dtype=key_dtype)
    return tf.lookup.KeyValueTensorInitializer(
        keys, tf.range(len(column.vocabulary_list), dtype=tf.int64))
  return tf.lookup.TextFileInitializer(
      column.vocabulary_file, key_dtype, tf.lookup.TextFileIndex.WHOLE_LINE,
      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
      vocab_size=column.vocabulary_size)


def _make_table(feature: Any) -> Any:
  """Returns the lookup table of a vocabulary-list or -file feature."""
  column = feature.column
  key_dtype = tf.string if column.dtype == 'string' else tf.int64
  initializer = _vocabulary_initializer(column, key_dtype)
  if column.num_oov_buckets:
    return tf.lookup.StaticVocabularyTable(initializer,
                                           column.num_oov_buckets)
  return tf.lookup.StaticHashTable(initializer, column.default_value)


def _renumber_positions(ids: tf.SparseTensor,
                        weights: Optional[tf.SparseTensor]
                       ) -> Tuple[tf.SparseTensor, Optional[tf.SparseTensor]]:
  """Numbers the ids of each row 0, 1, ... in order, closing dropped gaps.

  `ids` must be in row-major order (as parsing, `_to_sparse` and
  `tf.sparse.retain` leave it); `weights` shares its indices.
  """
  rows = ids.indices[:, 0]
  ragged = tf.RaggedTensor.from_value_rowids(ids.values, rows,
                                             nrows=ids.dense_shape[0])
  positions = (tf.range(tf.size(rows, out_type=tf.int64), dtype=tf.int64) -
               tf.gather(ragged.row_starts(), rows))
  indices = tf.stack([rows, positions], axis=1)
  ids = tf.SparseTensor(indices, ids.values, ids.dense_shape)
  if weights is not None:
    weights = tf.SparseTensor(indices, weights.values, weights.dense_shape)
  return ids, weights


def _drop_unknown(ids: tf.SparseTensor, weights: Optional[tf.SparseTensor]
                 ) -> Tuple[tf.SparseTensor, Optional[tf.SparseTensor]]:
  """Drops the -1 ids of unknown tokens (and their weights)."""
  keep = tf.not_equal(ids.values, -1)
  kept = tf.sparse.retain(ids, keep)
  if weights is not None:
    weights = tf.sparse.retain(weights, keep)
  return kept, weights


class IdMapper(tf.Module):
  """Maps input features to the row ids of their tables (see module doc)."""

  def __init__(self, features: Sequence[Any], name: str = 'id_mapper'):
    """Builds the lookup tables.

    Args:
      features: `resolved.ResolvedFeature`s.
      name: the module name.
    """
    super().__init__(name=name)
    self._features = list(features)
    self._tables = {}
    with self.name_scope:
      for feature in self._features:
        if isinstance(feature.column, (categorical.VocabularyListColumn,
                                       categorical.VocabularyFileColumn)):
          self._tables[feature.feature_key] = _make_table(feature)

  def _ids(self, feature: Any, sparse: tf.SparseTensor
          ) -> Tuple[tf.Tensor, bool]:
    """The int64 row ids of the values of one feature, and whether they
    still need the table range check (`IdMapper.__call__` runs it)."""
    key, column = feature.feature_key, feature.column
    if key in self._tables:
      _check_dtype(sparse, key, column.dtype == 'string')
      values = sparse.values
      if values.dtype.is_integer:
        values = tf.cast(values, tf.int64)
      return self._tables[key].lookup(values), False
    _check_dtype(sparse, key, want_string=False)
    values = tf.cast(sparse.values, tf.int64)
    if isinstance(column, categorical.IdentityColumn) and (
        column.default_value is not None):
      outside = tf.logical_or(values < 0, values >= column.number_buckets)
      return tf.where(outside, tf.constant(column.default_value, tf.int64),
                      values), False
    return values, True

  def _map_feature(self, feature: Any, inputs: Mapping[str, Any]
                  ) -> Tuple[tf.SparseTensor, Optional[tf.SparseTensor], bool]:
    """`(ids, weights, unchecked)`: `unchecked` ids need the range check."""
    key = feature.feature_key
    if key not in inputs:
      raise KeyError(f'Input feature {key!r} is missing; the inputs have '
                     f'{sorted(inputs)}.')
    sparse = _to_sparse(inputs[key], key)
    values, unchecked = self._ids(feature, sparse)
    ids = tf.SparseTensor(sparse.indices, values, sparse.dense_shape)
    weights = None
    if feature.weight_key is not None:
      if feature.weight_key not in inputs:
        raise KeyError(f'Weight feature {feature.weight_key!r} of {key!r} is '
                       f'missing; the inputs have {sorted(inputs)}.')
      weights = _weights_like(inputs[feature.weight_key], sparse, key,
                              feature.weight_key)
    dropped = feature.default_value == -1
    if dropped:
      # What remains after dropping the unknown tokens must lie in range.
      ids, weights = _drop_unknown(ids, weights)
      unchecked = True
    # A RaggedTensor's `to_sparse` numbers each row 0, 1, ... already: unless
    # ids were dropped, renumbering would rebuild the same indices.
    right_ragged = isinstance(inputs[key], tf.RaggedTensor) and not dropped
    if not feature.is_sequence and not right_ragged:
      ids, weights = _renumber_positions(ids, weights)
    return ids, weights, unchecked

  # Plain TensorFlow code without tensor-dependent Python control flow:
  # AutoGraph would only spend tracing time converting it.
  @tf.autograph.experimental.do_not_convert
  def __call__(self, inputs: Mapping[str, Any]
              ) -> Tuple[SparseIds, SparseWeights]:
    """Returns `(ids, weights)` keyed by feature key; see the module doc."""
    ids: SparseIds = {}
    weights: SparseWeights = {}
    unchecked = []
    for feature in self._features:
      key = feature.feature_key
      ids[key], weights[key], needs_check = self._map_feature(feature, inputs)
      if needs_check:
        unchecked.append(feature)
    checked = _check_ranges([ids[f.feature_key].values for f in unchecked],
                            [f.vocabulary_size for f in unchecked],
                            [f.feature_key for f in unchecked])
    for feature, values in zip(unchecked, checked):
      sparse = ids[feature.feature_key]
      ids[feature.feature_key] = tf.SparseTensor(sparse.indices, values,
                                                 sparse.dense_shape)
    return ids, weights
