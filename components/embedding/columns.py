"""TPU embedding columns, declared as TF 1.15's `tf.tpu.experimental` did.

`embedding_column` and `shared_embedding_columns` keep the signatures and the
argument checks of TF 1.15's `tf.tpu.experimental.embedding_column` and
`shared_embedding_columns`; the result is a plain, serialisable dataclass that
`EmbeddingSpec` turns into today's `tf.tpu.experimental.embedding` configs.

Decisions where TF left things to fail late:
  * `combiner` is checked for every column but only reduces non-sequence
    features. A sequence feature's lookup returns one embedding per position,
    so its combiner is ignored (as `TPUEmbedding` ignores it); the resolved
    description of a sequence feature reports `combiner=None`.
  * Sequence columns cannot be weighted (rejected in `categorical`).
  * `max_sequence_length` must be > 0 (or 'auto') for sequence columns and 0
    for the others. 'auto' is resolved from the statistics component's
    recommended lengths when the spec is resolved.
  * The arguments of `tf.feature_column.embedding_column` that TPU columns
    never supported (`ckpt_to_load_from`, `tensor_name_in_ckpt`, `max_norm`,
    `trainable=False`) are refused with a ValueError saying what to do.
"""

import dataclasses
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from components.embedding import categorical
from components.embedding import initializers
from components.embedding import registry
from components.embedding import schedules

AUTO = 'auto'
COMBINERS = ('mean', 'sum', 'sqrtn')
MaxSequenceLength = Union[int, str]

_TABLE_NAME = re.compile(r'^[A-Za-z0-9.][A-Za-z0-9_.\-]*$')

_UNSUPPORTED_ARGUMENTS = {
    'ckpt_to_load_from': (
        'TPU embedding tables cannot be warm-started by the column; restore '
        'the table variables from a checkpoint (tf.train.Checkpoint) after '
        'the embedding layer is built.'),
    'tensor_name_in_ckpt': (
        'TPU embedding tables cannot be warm-started by the column; restore '
        'the table variables from a checkpoint (tf.train.Checkpoint) after '
        'the embedding layer is built.'),
    'max_norm': (
        'TPU embedding lookups do not clip embedding norms; drop max_norm, '
        'or bound the weights with the optimizer\'s clip_weight_min / '
        'clip_weight_max.'),
    'trainable': (
        'TPU embedding tables are always trained; drop trainable=False.'),
}


def _refuse_unsupported(column_name: str, kwargs: Dict[str, Any]) -> None:
  """Raises for arguments of tf.feature_column that TPU columns refuse."""
  for arg, value in kwargs.items():
    if arg not in _UNSUPPORTED_ARGUMENTS:
      raise TypeError(f'embedding column {column_name!r}: unexpected keyword '
                      f'argument {arg!r}.')
    if arg == 'trainable' and value is True:
      continue
    if arg != 'trainable' and value is None:
      continue
    raise ValueError(
        f'embedding column {column_name!r}: `{arg}={value!r}` is not '
        f'supported by TPU embedding columns. {_UNSUPPORTED_ARGUMENTS[arg]}')


def check_table_name(name: str, column_name: str) -> None:
  """Raises unless `name` is usable as a table (variable) name."""
  if not isinstance(name, str) or not _TABLE_NAME.match(name):
    raise ValueError(
        f'Table name {name!r} of column {column_name!r} is invalid: use '
        'letters, digits, ".", "_" and "-" (not starting with "_" or "-").')


def derive_table_name(names: Sequence[str], shared: bool) -> str:
  """The default table name: '<name>_embedding' or '<a>_<b>_shared_embedding'.

  Characters not allowed in variable names become '_'.
  """
  suffix = '_shared_embedding' if shared else '_embedding'
  raw = '_'.join(sorted(names)) + suffix
  return re.sub(r'[^A-Za-z0-9_.\-]', '_', raw).lstrip('_-') or 'table'


@dataclasses.dataclass(frozen=True)
class EmbeddingColumn:
  """An embedding of one categorical feature in a table.

  Attributes:
    categorical_column: the ids (a `categorical` column or a TensorFlow
      categorical feature column, converted on construction).
    dimension: embedding width, an int > 0.
    combiner: 'mean', 'sum' or 'sqrtn'; reduces the ids of one row of a
      non-sequence feature (ignored for sequence features).
    initializer: None for truncated normal (mean 0, stddev 1/sqrt(dimension)),
      or a callable `(shape, dtype) -> tensor` (see `initializers.initializer`).
    max_sequence_length: > 0 or 'auto' for sequence columns, 0 otherwise.
      Shorter sequences are padded with zero embeddings, longer ones truncated.
    learning_rate_fn: None, or a callable `global_step -> learning rate` for
      this table (see `schedules.learning_rate_schedule`).
    table_name: the table's name; derived from the column name when None.
    shared_with: the feature keys sharing the table, for shared columns.
    use_safe_embedding_lookup: becomes `FeatureConfig.
      validate_weights_and_indices` (checks empty rows and negative ids and
      weights at some cost, on the CPU path).
  """

  categorical_column: categorical.CategoricalColumn
  dimension: int
  combiner: str = 'mean'
  initializer: Optional[Callable[..., Any]] = None
  max_sequence_length: MaxSequenceLength = 0
  learning_rate_fn: Optional[Callable[[Any], Any]] = None
  table_name: Optional[str] = None
  shared_with: Tuple[str, ...] = ()
  use_safe_embedding_lookup: bool = True

  def __post_init__(self):
    column = categorical.as_categorical_column(self.categorical_column)
    object.__setattr__(self, 'categorical_column', column)
    object.__setattr__(self, 'shared_with', tuple(self.shared_with))
    name = column.name
    for field in ('dimension', 'max_sequence_length'):
      object.__setattr__(self, field,
                         categorical.python_int(getattr(self, field)))
    if (isinstance(self.dimension, bool) or not isinstance(self.dimension, int)
        or self.dimension < 1):
      raise ValueError(f'Invalid dimension {self.dimension!r} for embedding '
                       f'column {name!r}: must be an int > 0, got '
                       f'{categorical.describe(self.dimension)}.')
    if not isinstance(self.combiner, str) or self.combiner not in COMBINERS:
      raise ValueError(f'Invalid combiner {self.combiner!r} for embedding '
                       f'column {name!r}: must be one of {COMBINERS}.')
    if self.initializer is not None and not callable(self.initializer):
      raise ValueError('initializer must be callable if specified. Embedding '
                       f'of column_name: {name!r}, got {self.initializer!r}.')
    if self.learning_rate_fn is not None and not callable(
        self.learning_rate_fn):
      raise ValueError(f'learning_rate_fn of column {name!r} must be a '
                       'callable global_step -> learning rate, got '
                       f'{self.learning_rate_fn!r}.')
    if not isinstance(self.use_safe_embedding_lookup, bool):
      raise ValueError(f'use_safe_embedding_lookup of column {name!r} must be '
                       'a bool.')
    _check_max_sequence_length(column, self.max_sequence_length)
    if self.table_name is not None:
      check_table_name(self.table_name, name)

  @property
  def name(self) -> str:
    """The categorical column's name."""
    return self.categorical_column.name

  @property
  def feature_key(self) -> str:
    """The key of the input tensor holding the ids."""
    return self.categorical_column.feature_key

  @property
  def is_sequence(self) -> bool:
    """Whether the feature is embedded per position, without combining."""
    return self.categorical_column.is_sequence

  @property
  def resolved_table_name(self) -> str:
    """The explicit table name, or the derived one."""
    return self.table_name or derive_table_name([self.name], shared=False)

  def to_config(self) -> Dict[str, Any]:
    """Returns the JSON-ready form of the column."""
    return {
        'categorical_column': self.categorical_column.to_config(),
        'dimension': self.dimension,
        'combiner': self.combiner,
        'initializer': registry.callable_to_config(
            self.initializer, initializers.Initializer,
            f'initializer of column {self.name!r}'),
        'max_sequence_length': self.max_sequence_length,
        'learning_rate_fn': registry.callable_to_config(
            self.learning_rate_fn, schedules.LearningRateSchedule,
            f'learning_rate_fn of column {self.name!r}'),
        'table_name': self.table_name,
        'shared_with': list(self.shared_with),
        'use_safe_embedding_lookup': self.use_safe_embedding_lookup,
    }

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> 'EmbeddingColumn':
    """Inverse of `to_config`."""
    config = dict(config)
    config['categorical_column'] = categorical.categorical_column_from_config(
        config['categorical_column'])
    config['initializer'] = registry.callable_from_config(
        config.get('initializer'), initializers.Initializer)
    config['learning_rate_fn'] = registry.callable_from_config(
        config.get('learning_rate_fn'), schedules.LearningRateSchedule)
    config['shared_with'] = tuple(config.get('shared_with') or ())
    return cls(**config)


def _check_max_sequence_length(column: categorical.CategoricalColumn,
                               length: Any) -> None:
  """Raises unless `length` suits a sequence or a non-sequence column."""
  valid_int = isinstance(length, int) and not isinstance(length, bool)
  if column.is_sequence:
    if length == AUTO or (valid_int and length > 0):
      return
    kind = '' if valid_int else f' ({type(length).__name__})'
    raise ValueError(
        'max_sequence_length must be greater than 0 for sequence columns. Got '
        f'max_sequence_length={length!r}{kind} for sequence column '
        f'{column.name!r}; '
        f"give the length to pad/truncate to, or '{AUTO}' to use the "
        'statistics component\'s recommendation.')
  if not (valid_int and length == 0):
    raise ValueError(
        f'Non zero max_seq_length={length!r} specified for non sequence '
        f'column {column.name!r}: use a sequence_categorical_column_* for '
        'sequence features, or leave max_sequence_length at 0.')


def embedding_column(categorical_column: Any,
                     dimension: int,
                     combiner: str = 'mean',
                     initializer: Optional[Callable[..., Any]] = None,
                     max_sequence_length: MaxSequenceLength = 0,
                     learning_rate_fn: Optional[Callable[[Any], Any]] = None,
                     use_safe_embedding_lookup: bool = True,
                     table_name: Optional[str] = None,
                     **unsupported: Any) -> EmbeddingColumn:
  """TF 1.15's `tf.tpu.experimental.embedding_column`, serialisable.

  Args:
    categorical_column: a categorical column of this package, or a
      `tf.feature_column` identity / vocabulary-list / vocabulary-file /
      weighted / sequence categorical column.
    dimension: an int > 0.
    combiner: 'mean', 'sum' or 'sqrtn'; how the ids of one row of a
      non-sequence feature are reduced (ignored for sequence features).
    initializer: None (truncated normal, mean 0.0, stddev 1/sqrt(dimension))
      or a callable `(shape, dtype) -> tensor`.
    max_sequence_length: > 0 or 'auto' for sequence columns, 0 otherwise.
    learning_rate_fn: callable `global_step -> learning rate` for this table;
      overrides the spec optimizer's learning rate.
    use_safe_embedding_lookup: see `EmbeddingColumn`.
    table_name: optional explicit table name.
    **unsupported: `ckpt_to_load_from`, `tensor_name_in_ckpt`, `max_norm`,
      `trainable`, accepted only to be refused with an explanation.

  Raises:
    ValueError: if `dimension` is not an int > 0, `initializer` is given but
      not callable, `max_sequence_length` does not suit the column, or an
      unsupported argument is set.
    TypeError: if `categorical_column` is not of a supported kind.
  """
  column = categorical.as_categorical_column(categorical_column)
  _refuse_unsupported(column.name, unsupported)
  return EmbeddingColumn(column, dimension, combiner, initializer,
                         max_sequence_length, learning_rate_fn, table_name,
                         use_safe_embedding_lookup=use_safe_embedding_lookup)


def _check_shared_sizes(columns: Sequence[categorical.CategoricalColumn]
                       ) -> None:
  """Raises if the table sizes known at declaration differ."""
  known = [(c.name, c.num_buckets) for c in columns if c.num_buckets]
  if len({size for _, size in known}) > 1:
    raise ValueError(
        'To use shared_embedding_columns, all categorical_columns must have '
        f'the same number of buckets; got {dict(known)}.')


def shared_embedding_columns(
    categorical_columns: Sequence[Any],
    dimension: int,
    combiner: str = 'mean',
    initializer: Optional[Callable[..., Any]] = None,
    shared_embedding_collection_name: Optional[str] = None,
    max_sequence_lengths: Optional[Sequence[MaxSequenceLength]] = None,
    learning_rate_fn: Optional[Callable[[Any], Any]] = None,
    use_safe_embedding_lookup: bool = True,
    **unsupported: Any) -> List[EmbeddingColumn]:
  """TF 1.15's `tf.tpu.experimental.shared_embedding_columns`: one table.

  The positional order is TensorFlow's (`categorical_columns, dimension,
  combiner, initializer, shared_embedding_collection_name,
  max_sequence_lengths, learning_rate_fn, use_safe_embedding_lookup`), so that
  TPUEstimator code calling it positionally keeps its meaning.

  The table is named `shared_embedding_collection_name`, or by default after
  the sorted column names ('a_b_shared_embedding', as TensorFlow does).
  Sizes of Transform-vocabulary columns are compared at resolution.

  Raises:
    ValueError: for the `embedding_column` errors, differing known vocabulary
      sizes, a feature given twice, or `max_sequence_lengths` of another
      length than `categorical_columns`.
  """
  columns = [categorical.as_categorical_column(c) for c in categorical_columns]
  if not columns:
    raise ValueError('shared_embedding_columns needs at least one column.')
  label = ', '.join(c.name for c in columns)
  _refuse_unsupported(label, unsupported)
  keys = [c.feature_key for c in columns]
  if len(set(keys)) != len(keys):
    raise ValueError(f'shared_embedding_columns got feature keys {keys}; each '
                     'feature can appear once.')
  if not max_sequence_lengths:
    max_sequence_lengths = [0] * len(columns)
  if len(max_sequence_lengths) != len(columns):
    raise ValueError(
        'max_sequence_lengths and categorical_columns must be of the same '
        f'length. len(max_sequence_lengths)={len(max_sequence_lengths)} '
        f'len(categorical_columns)={len(columns)}.')
  _check_shared_sizes(columns)
  table_name = shared_embedding_collection_name or derive_table_name(
      [c.name for c in columns], shared=True)
  check_table_name(table_name, label)
  shared_with = tuple(sorted(keys))
  return [EmbeddingColumn(c, dimension, combiner, initializer, length,
                          learning_rate_fn, table_name, shared_with,
                          use_safe_embedding_lookup)
          for c, length in zip(columns, max_sequence_lengths)]
