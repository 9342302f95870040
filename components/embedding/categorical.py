"""Categorical columns: which input feature holds ids, and how many ids exist.

The constructors take the arguments, argument order and validation of
`tf.feature_column`'s (TF 1.15 signatures, which TPUEstimator code uses), and
`as_categorical_column` converts TensorFlow's own column objects of the same
kinds, so that `tf.feature_column.categorical_column_with_identity(...)` and
friends can be passed wherever a categorical column is expected.

Two constructors are this project's own: `categorical_column_with_transform_
vocabulary` and its sequence variant, for int64 ids already produced in
`preprocessing_fn` by `tft.compute_and_apply_vocabulary`/`tft.apply_vocabulary`.
Their table size is only known once the Transform output exists
(see `resolution`).

Divergence from TensorFlow: a vocabulary file whose size is not given is
counted at resolution time, not at declaration, because a spec is declared
where the file (often on GCS) may not be readable yet.
"""

import dataclasses
import numbers
import re
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

_INT_DTYPES = ('int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
               'uint64')
_FLOAT_DTYPES = ('float16', 'bfloat16', 'float32', 'float64')


def _fail(message: str) -> None:
  raise ValueError(message)


def _check_key(key: Any, what: str) -> None:
  if not isinstance(key, str) or not key:
    _fail(f'{what} must be a non-empty string, got {key!r}.')


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def python_int(value: Any) -> Any:
  """Returns a numpy integer as a Python int, and any other value unchanged.

  TensorFlow accepts `np.int64(5)` wherever it accepts 5; columns store the
  Python int so that they compare equal and serialise to JSON. Booleans
  (Python or numpy) are not integers here.
  """
  if isinstance(value, numbers.Integral) and not isinstance(
      value, (bool, np.bool_)):
    return int(value)
  return value


def describe(value: Any) -> str:
  """`value` and its type, for messages about a value of the wrong type."""
  return f'{value!r} of type {type(value).__name__}'


def _coerce_ints(column: Any, *fields: str) -> None:
  """Replaces numpy integers in `fields` of a frozen dataclass by ints."""
  for field in fields:
    object.__setattr__(column, field, python_int(getattr(column, field)))


def _check_int(value: Any, what: str, minimum: int, column: str) -> None:
  """Raises, naming the type or the bound, unless `value` is an int >= min."""
  if not _is_int(value):
    _fail(f'{what} must be an int >= {minimum}, got {describe(value)}, '
          f'column_name {column!r}.')
  if value < minimum:
    _fail(f'{what} {value} < {minimum}, column_name {column!r}.')


def _dtype_name(dtype: Any) -> str:
  """Returns the name of a tf.DType, numpy dtype or dtype string."""
  return tf.as_dtype(dtype).name


def _key_dtype_name(dtype: Any, key: str) -> str:
  """Normalises a vocabulary key dtype to 'string' or 'int64'."""
  name = _dtype_name(dtype)
  if name == 'string':
    return 'string'
  if name in _INT_DTYPES:
    return 'int64'
  raise ValueError(f'Column {key!r}: dtype {name} is neither string nor '
                   'integer.')


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
  """Base of the categorical columns; `key` names the input feature."""

  KIND: ClassVar[str] = ''

  @property
  def name(self) -> str:
    """The column name, as TensorFlow names the same column."""
    return self.key

  @property
  def feature_key(self) -> str:
    """The key of the input tensor that holds the ids or tokens."""
    return self.key

  @property
  def weight_key(self) -> Optional[str]:
    """The key of the input tensor that holds the weights, if any."""
    return None

  @property
  def base(self) -> 'CategoricalColumn':
    """The column without weights."""
    return self

  @property
  def num_buckets(self) -> Optional[int]:
    """Rows of the table, OOV buckets included; None until resolution."""
    raise NotImplementedError

  def to_config(self) -> Dict[str, Any]:
    """Returns the JSON-ready form `{"type": KIND, <fields>...}`."""
    config = {'type': self.KIND}
    config.update(dataclasses.asdict(self))
    return config


@dataclasses.dataclass(frozen=True)
class IdentityColumn(CategoricalColumn):
  """Integer ids used as table rows; the table has `num_buckets` rows."""

  key: str
  number_buckets: int
  default_value: Optional[int] = None
  is_sequence: bool = False

  KIND: ClassVar[str] = 'identity'

  def __post_init__(self):
    _check_key(self.key, 'The key of an identity column')
    _coerce_ints(self, 'number_buckets', 'default_value')
    _check_int(self.number_buckets, 'num_buckets', 1, self.key)
    if self.default_value is not None and not _is_int(self.default_value):
      _fail(f'default_value of column {self.key!r} must be an int or None, '
            f'got {describe(self.default_value)}.')
    if (self.default_value is not None and
        not 0 <= self.default_value < self.number_buckets):
      _fail(f'default_value {self.default_value!r} not in range '
            f'[0, {self.number_buckets}), column_name {self.key!r}.')
    _check_bool(self.is_sequence, 'is_sequence', self.key)

  @property
  def num_buckets(self) -> int:
    return self.number_buckets


def _check_bool(value: Any, what: str, column: str) -> None:
  if not isinstance(value, bool):
    _fail(f'{what} of column {column!r} must be True or False, got '
          f'{describe(value)}.')


def _check_oov_and_default(key: str, num_oov_buckets: Any,
                           default_value: Any) -> None:
  if not _is_int(num_oov_buckets) or num_oov_buckets < 0:
    _fail(f'Invalid num_oov_buckets {describe(num_oov_buckets)} in {key!r}: '
          'must be an int >= 0.')
  if num_oov_buckets and default_value != -1:
    _fail(f"Can't specify both num_oov_buckets ({num_oov_buckets}) and "
          f'default_value ({default_value}) in {key!r}: out-of-vocabulary '
          'values go to the OOV buckets, so leave default_value unset.')
  if not _is_int(default_value) or default_value < -1:
    _fail(f'default_value {describe(default_value)} in {key!r} must be -1 '
          '(ignore out-of-vocabulary values) or a row id >= 0.')


def _normalise_vocabulary(key: str, vocabulary: Sequence[Any]
                         ) -> Tuple[Tuple[Any, ...], str]:
  """Returns the vocabulary as a tuple of str or int, and its key dtype."""
  if vocabulary is None or len(vocabulary) < 1:
    _fail(f'vocabulary_list {vocabulary!r} must be non-empty, column_name: '
          f'{key!r}.')
  values = tuple(v.decode('utf-8') if isinstance(v, bytes) else v
                 for v in vocabulary)
  values = tuple(int(v) if hasattr(v, 'dtype') and
                 getattr(v.dtype, 'kind', '') in 'iu' else v for v in values)
  if all(isinstance(v, str) for v in values):
    dtype = 'string'
  elif all(_is_int(v) for v in values):
    dtype = 'int64'
  else:
    _fail(f'vocabulary_list of column {key!r} must hold only strings or only '
          f'integers, got {list(values)[:5]}...')
  if len(set(values)) != len(values):
    duplicates = sorted({v for v in values if values.count(v) > 1})
    _fail(f'Duplicate keys in vocabulary_list of column {key!r}: '
          f'{duplicates}.')
  return values, dtype


@dataclasses.dataclass(frozen=True)
class VocabularyListColumn(CategoricalColumn):
  """Tokens looked up in an in-memory vocabulary (+ OOV hash buckets)."""

  key: str
  vocabulary_list: Tuple[Any, ...]
  dtype: str = 'string'
  default_value: int = -1
  num_oov_buckets: int = 0
  is_sequence: bool = False

  KIND: ClassVar[str] = 'vocabulary_list'

  def __post_init__(self):
    _check_key(self.key, 'The key of a vocabulary-list column')
    values, vocab_dtype = _normalise_vocabulary(self.key,
                                                self.vocabulary_list)
    object.__setattr__(self, 'vocabulary_list', values)
    dtype = _key_dtype_name(self.dtype, self.key)
    if dtype != vocab_dtype:
      _fail(f'dtype {dtype} and vocabulary dtype {vocab_dtype} do not match, '
            f'column_name: {self.key!r}.')
    object.__setattr__(self, 'dtype', dtype)
    _coerce_ints(self, 'num_oov_buckets', 'default_value')
    _check_oov_and_default(self.key, self.num_oov_buckets, self.default_value)
    _check_bool(self.is_sequence, 'is_sequence', self.key)
    if self.default_value >= len(values):
      _fail(f'default_value {self.default_value} of column {self.key!r} is '
            f'outside the table rows [0, {len(values)}).')

  @property
  def num_buckets(self) -> int:
    return len(self.vocabulary_list) + self.num_oov_buckets

  def to_config(self) -> Dict[str, Any]:
    config = super().to_config()
    config['vocabulary_list'] = list(self.vocabulary_list)
    return config


@dataclasses.dataclass(frozen=True)
class VocabularyFileColumn(CategoricalColumn):
  """Tokens looked up in a vocabulary file, one token a line."""

  key: str
  vocabulary_file: str
  vocabulary_size: Optional[int] = None
  num_oov_buckets: int = 0
  default_value: Optional[int] = -1
  dtype: str = 'string'
  is_sequence: bool = False

  KIND: ClassVar[str] = 'vocabulary_file'

  def __post_init__(self):
    _check_key(self.key, 'The key of a vocabulary-file column')
    if not self.vocabulary_file or not isinstance(self.vocabulary_file, str):
      _fail(f'Missing vocabulary_file in {self.key!r}.')
    if self.vocabulary_file.endswith('tfrecord.gz'):
      _fail(f'Column {self.key!r}: TFRecord vocabulary files are not '
            'supported; use a text file with one token a line.')
    _coerce_ints(self, 'vocabulary_size', 'num_oov_buckets', 'default_value')
    if self.vocabulary_size is not None and (
        not _is_int(self.vocabulary_size) or self.vocabulary_size < 1):
      _fail(f'Invalid vocabulary_size {describe(self.vocabulary_size)} in '
            f'{self.key!r}: must be an int >= 1, or None to count the lines.')
    _check_bool(self.is_sequence, 'is_sequence', self.key)
    default = -1 if self.default_value is None else self.default_value
    object.__setattr__(self, 'default_value', default)
    _check_oov_and_default(self.key, self.num_oov_buckets, default)
    object.__setattr__(self, 'dtype', _key_dtype_name(self.dtype, self.key))

  @property
  def num_buckets(self) -> Optional[int]:
    if self.vocabulary_size is None:
      return None
    return self.vocabulary_size + self.num_oov_buckets


@dataclasses.dataclass(frozen=True)
class TransformVocabularyColumn(CategoricalColumn):
  """Int64 ids produced by a Transform vocabulary named `vocabulary_name`."""

  key: str
  vocabulary_name: str
  is_sequence: bool = False

  KIND: ClassVar[str] = 'transform_vocabulary'

  def __post_init__(self):
    _check_key(self.key, 'The key of a Transform-vocabulary column')
    _check_key(self.vocabulary_name,
               f'The vocabulary_name of column {self.key!r}')
    _check_bool(self.is_sequence, 'is_sequence', self.key)
    if re.search(r'[/\\]', self.vocabulary_name):
      _fail(f'vocabulary_name {self.vocabulary_name!r} of column '
            f'{self.key!r} must be the `vocab_filename` given to tft, not a '
            'path.')

  @property
  def num_buckets(self) -> Optional[int]:
    return None


@dataclasses.dataclass(frozen=True)
class WeightedColumn(CategoricalColumn):
  """A categorical column whose ids carry weights from another feature."""

  categorical_column: CategoricalColumn
  weight_feature_key: str
  dtype: str = 'float32'

  KIND: ClassVar[str] = 'weighted'

  def __post_init__(self):
    inner = as_categorical_column(self.categorical_column)
    object.__setattr__(self, 'categorical_column', inner)
    _check_key(self.weight_feature_key,
               f'The weight_feature_key of column {inner.key!r}')
    if isinstance(inner, WeightedColumn):
      _fail(f'Column {inner.name!r} is already weighted; a column takes one '
            'weight feature.')
    if inner.is_sequence:
      _fail(f'Sequence column {inner.key!r} cannot be weighted by '
            f'{self.weight_feature_key!r}: sequence lookups return one '
            'embedding per position and ignore weights. Use a non-sequence '
            'column, or drop the weights.')
    if self.weight_feature_key == inner.key:
      _fail(f'Column {inner.key!r}: the weight feature must be another '
            'feature than the ids.')
    dtype = _dtype_name(self.dtype)
    if dtype not in _FLOAT_DTYPES + _INT_DTYPES:
      _fail(f'dtype {dtype} is not convertible to float.')
    object.__setattr__(self, 'dtype', dtype)

  @property
  def key(self) -> str:
    return self.categorical_column.key

  @property
  def name(self) -> str:
    inner = self.categorical_column.name
    return f'{inner}_weighted_by_{self.weight_feature_key}'

  @property
  def weight_key(self) -> str:
    return self.weight_feature_key

  @property
  def base(self) -> CategoricalColumn:
    return self.categorical_column

  @property
  def is_sequence(self) -> bool:
    return False

  @property
  def num_buckets(self) -> Optional[int]:
    return self.categorical_column.num_buckets

  def to_config(self) -> Dict[str, Any]:
    return {'type': self.KIND,
            'categorical_column': self.categorical_column.to_config(),
            'weight_feature_key': self.weight_feature_key,
            'dtype': self.dtype}


COLUMN_TYPES = {cls.KIND: cls for cls in (
    IdentityColumn, VocabularyListColumn, VocabularyFileColumn,
    TransformVocabularyColumn, WeightedColumn)}


def categorical_column_from_config(config: Dict[str, Any]) -> CategoricalColumn:
  """Inverse of `CategoricalColumn.to_config`."""
  config = dict(config)
  kind = config.pop('type', None)
  if kind not in COLUMN_TYPES:
    raise ValueError(f'Unknown categorical column type {kind!r}; expected one '
                     f'of {sorted(COLUMN_TYPES)}.')
  if kind == WeightedColumn.KIND:
    config['categorical_column'] = categorical_column_from_config(
        config['categorical_column'])
  return COLUMN_TYPES[kind](**config)


# --- Constructors with tf.feature_column's signatures. ---


def categorical_column_with_identity(key: str, num_buckets: int,
                                     default_value: Optional[int] = None
                                    ) -> IdentityColumn:
  """Ids in `[0, num_buckets)`; out-of-range ids map to `default_value`.

  Without `default_value`, an out-of-range id fails the lookup with
  `tf.errors.InvalidArgumentError` naming the feature.
  """
  return IdentityColumn(key, num_buckets, default_value)


def sequence_categorical_column_with_identity(
    key: str, num_buckets: int,
    default_value: Optional[int] = None) -> IdentityColumn:
  """The sequence variant of `categorical_column_with_identity`."""
  return IdentityColumn(key, num_buckets, default_value, is_sequence=True)


def categorical_column_with_vocabulary_list(
    key: str, vocabulary_list: Sequence[Any], dtype: Any = None,
    default_value: int = -1, num_oov_buckets: int = 0) -> VocabularyListColumn:
  """Tokens in `vocabulary_list` map to their position; others to OOV buckets.

  Without OOV buckets, unknown tokens map to `default_value`; -1 (the
  default) means they are ignored, as TensorFlow's embedding lookups ignore
  negative ids.
  """
  values, vocab_dtype = _normalise_vocabulary(key, vocabulary_list)
  return VocabularyListColumn(key, values, dtype or vocab_dtype,
                              default_value, num_oov_buckets)


def sequence_categorical_column_with_vocabulary_list(
    key: str, vocabulary_list: Sequence[Any], dtype: Any = None,
    default_value: int = -1, num_oov_buckets: int = 0) -> VocabularyListColumn:
  """The sequence variant of `categorical_column_with_vocabulary_list`."""
  column = categorical_column_with_vocabulary_list(
      key, vocabulary_list, dtype, default_value, num_oov_buckets)
  return dataclasses.replace(column, is_sequence=True)


def categorical_column_with_vocabulary_file(
    key: str, vocabulary_file: str, vocabulary_size: Optional[int] = None,
    num_oov_buckets: int = 0, default_value: Optional[int] = None,
    dtype: Any = tf.string) -> VocabularyFileColumn:
  """Tokens of a one-token-a-line file map to their line number.

  `vocabulary_size=None` counts the lines when the spec is resolved.
  """
  return VocabularyFileColumn(key, vocabulary_file, vocabulary_size,
                              num_oov_buckets, default_value, dtype)


def sequence_categorical_column_with_vocabulary_file(
    key: str, vocabulary_file: str, vocabulary_size: Optional[int] = None,
    num_oov_buckets: int = 0, default_value: Optional[int] = None,
    dtype: Any = tf.string) -> VocabularyFileColumn:
  """The sequence variant of `categorical_column_with_vocabulary_file`."""
  return VocabularyFileColumn(key, vocabulary_file, vocabulary_size,
                              num_oov_buckets, default_value, dtype,
                              is_sequence=True)


def categorical_column_with_transform_vocabulary(
    key: str, vocabulary_name: str) -> TransformVocabularyColumn:
  """Ids already produced in `preprocessing_fn` from a Transform vocabulary.

  Args:
    key: the transformed feature holding the int64 ids, the direct output of
      `tft.compute_and_apply_vocabulary` or `tft.apply_vocabulary`.
    vocabulary_name: the `vocab_filename` given to the tft call.

  The table size (vocabulary + OOV buckets) is read from the Transform output
  at resolution; see `resolution.transform_vocabulary_size`.
  """
  return TransformVocabularyColumn(key, vocabulary_name)


def sequence_categorical_column_with_transform_vocabulary(
    key: str, vocabulary_name: str) -> TransformVocabularyColumn:
  """The sequence variant of `categorical_column_with_transform_vocabulary`."""
  return TransformVocabularyColumn(key, vocabulary_name, is_sequence=True)


def weighted_categorical_column(categorical_column: Any,
                                weight_feature_key: str,
                                dtype: Any = tf.float32) -> WeightedColumn:
  """Weights each id of `categorical_column` by `weight_feature_key`'s value."""
  return WeightedColumn(as_categorical_column(categorical_column),
                        weight_feature_key, dtype)


# --- Conversion of TensorFlow's own feature-column objects. ---


def _from_tf_identity(column: Any, is_sequence: bool) -> CategoricalColumn:
  num_buckets = getattr(column, 'number_buckets', None)
  if num_buckets is None:
    num_buckets = column.num_buckets
  return IdentityColumn(column.key, num_buckets, column.default_value,
                        is_sequence)


def _from_tf_vocabulary_list(column: Any, is_sequence: bool
                            ) -> CategoricalColumn:
  return VocabularyListColumn(column.key, tuple(column.vocabulary_list),
                              column.dtype, column.default_value,
                              column.num_oov_buckets, is_sequence)


def _from_tf_vocabulary_file(column: Any, is_sequence: bool
                            ) -> CategoricalColumn:
  if getattr(column, 'file_format', None):
    raise ValueError(f'Column {column.key!r}: vocabulary file format '
                     f'{column.file_format!r} is not supported; use a text '
                     'file with one token a line.')
  size = column.vocabulary_size
  if isinstance(size, tf.Tensor):
    size = int(size.numpy())
  return VocabularyFileColumn(column.key, column.vocabulary_file, size,
                              column.num_oov_buckets, column.default_value,
                              column.dtype, is_sequence)


_TF_CONVERTERS = {
    'IdentityCategoricalColumn': _from_tf_identity,
    'VocabularyListCategoricalColumn': _from_tf_vocabulary_list,
    'VocabularyFileCategoricalColumn': _from_tf_vocabulary_file,
}


def _tf_class_name(column: Any) -> str:
  return type(column).__name__.lstrip('_')


def as_categorical_column(column: Any) -> CategoricalColumn:
  """Returns `column`, converting TensorFlow's feature columns of TPU kinds.

  Accepts this module's columns and `tf.feature_column` (v1 or v2) identity,
  vocabulary-list, vocabulary-file, weighted and sequence categorical columns.

  Raises:
    TypeError: for any other object, e.g. hashed, crossed or bucketized
      columns, which TPU embedding columns have never supported.
  """
  if isinstance(column, CategoricalColumn):
    return column
  name = _tf_class_name(column)
  is_sequence = False
  if name == 'SequenceCategoricalColumn':
    column, is_sequence = column.categorical_column, True
    name = _tf_class_name(column)
  if name == 'WeightedCategoricalColumn':
    if is_sequence:
      raise ValueError(
          f'Sequence column {column.categorical_column.key!r} cannot be '
          f'weighted by {column.weight_feature_key!r}: sequence lookups '
          'return one embedding per position and ignore weights.')
    return WeightedColumn(as_categorical_column(column.categorical_column),
                          column.weight_feature_key, column.dtype)
  if name in _TF_CONVERTERS:
    return _TF_CONVERTERS[name](column, is_sequence)
  raise TypeError(
      f'categorical_column for TPU embedding_column must be an identity, '
      f'vocabulary-list, vocabulary-file, Transform-vocabulary, weighted or '
      f'sequence categorical column (this package\'s or tf.feature_column\'s); '
      f'got {type(column).__name__}: {column!r}. Hashed, crossed and '
      'bucketized columns are not supported: compute ids in preprocessing_fn '
      '(e.g. tft.compute_and_apply_vocabulary) instead.')
