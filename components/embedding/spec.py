"""`EmbeddingSpec`: the embedding columns of a model and their optimizer.

A spec is declared once (in a pipeline definition or a trainer module),
validated on construction, travels as JSON (TFX `custom_config`, compiled
Kubeflow pipelines) and is resolved at training time against the Transform
output and the statistics component's sequence lengths.

JSON shape (`to_json`), version 1:

  {"format_version": 1,
   "optimizer": {"type": "Adagrad", "learning_rate": 0.1 | <callable>, ...},
   "oov_rows": "random" | "zero" | "mean_after_training",   (optional)
   "oov_rows_by_table": {"<table>": <one of the same>},      (optional)
   "columns": [
     {"categorical_column": {"type": "identity", "key": "x",
                             "number_buckets": 10, "default_value": null,
                             "is_sequence": false},
      "dimension": 8, "combiner": "mean",
      "initializer": null | <callable>,
      "max_sequence_length": 0 | 16 | "auto",
      "learning_rate_fn": null | <callable>,
      "table_name": null | "name", "shared_with": ["a", "b"],
      "use_safe_embedding_lookup": true}, ...]}

where <callable> is `{"name": <registered name>, "params": {...}}` or
`{"path": "package.module.function", "params": {...}}`, and the categorical
column types are "identity", "vocabulary_list" (key, vocabulary_list, dtype,
default_value, num_oov_buckets, is_sequence), "vocabulary_file" (key,
vocabulary_file, vocabulary_size, num_oov_buckets, default_value, dtype,
is_sequence), "transform_vocabulary" (key, vocabulary_name, is_sequence) and
"weighted" (categorical_column, weight_feature_key, dtype).
"""

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from components.embedding import categorical
from components.embedding import columns as columns_lib
from components.embedding import optimizers
from components.embedding import oov
from components.embedding import registry
from components.embedding import resolution
from components.embedding import resolved
from components.embedding import schema

FORMAT_VERSION = 1


def _check_unique_keys(columns: Sequence[columns_lib.EmbeddingColumn]) -> None:
  """Raises when a feature is embedded twice or is also another's weight."""
  seen: Dict[str, str] = {}
  for column in columns:
    key = column.feature_key
    if key in seen:
      raise ValueError(
          f'Feature {key!r} is embedded by two columns ({seen[key]!r} and '
          f'{column.name!r}); each feature can be embedded once. To look a '
          'feature up in two tables, copy it to a second key in '
          'preprocessing_fn.')
    seen[key] = column.name
  for column in columns:
    weight = column.categorical_column.weight_key
    if weight is not None and weight in seen:
      raise ValueError(
          f'Weight feature {weight!r} of column {column.name!r} is also '
          f'embedded as ids by column {seen[weight]!r}; use separate '
          'features for ids and weights.')


def _table_signature(column: columns_lib.EmbeddingColumn) -> Tuple[Any, ...]:
  return (column.dimension, column.combiner, column.initializer,
          column.learning_rate_fn, column.shared_with)


def _check_tables(columns: Sequence[columns_lib.EmbeddingColumn]) -> None:
  """Raises when columns share a table name without being declared shared."""
  groups: Dict[str, List[columns_lib.EmbeddingColumn]] = {}
  for column in columns:
    groups.setdefault(column.resolved_table_name, []).append(column)
  for name, members in groups.items():
    keys = tuple(sorted(c.feature_key for c in members))
    shared = all(c.shared_with == keys for c in members)
    if len(members) > 1 and not shared:
      raise ValueError(
          f'Duplicate table name {name!r}: used by columns '
          f'{[c.name for c in members]}, which were not declared together '
          'with shared_embedding_columns. Give them different table_name '
          '(or shared_embedding_collection_name) values.')
    first = _table_signature(members[0])
    if any(_table_signature(c) != first for c in members[1:]):
      raise ValueError(
          f'Columns {[c.name for c in members]} share table {name!r} but '
          'differ in dimension, combiner, initializer or learning_rate_fn; '
          'declare them in one shared_embedding_columns call.')
    missing = [k for c in members for k in c.shared_with if k not in keys]
    if missing:
      raise ValueError(
          f'Shared table {name!r} was declared for features '
          f'{list(members[0].shared_with)}, but the spec lacks {missing}; '
          'add all the columns returned by shared_embedding_columns.')


@dataclasses.dataclass(frozen=True)
class EmbeddingSpec:
  """The embedding columns of a model and the optimizer of their tables.

  Attributes:
    columns: `EmbeddingColumn`s (from `embedding_column` /
      `shared_embedding_columns`), at most one per feature key.
    optimizer: the embedding optimizer of every table; a column's
      `learning_rate_fn` replaces its learning rate for that column's table.
    oov_rows: how the OOV rows of every table start: 'random' (the table's
      initializer), 'zero', or 'mean_after_training' (see `oov`).
    oov_rows_by_table: `{table name: mode}` overriding `oov_rows` per table.
  """

  columns: Tuple[columns_lib.EmbeddingColumn, ...]
  optimizer: optimizers.EmbeddingOptimizer
  oov_rows: str = oov.RANDOM
  oov_rows_by_table: Mapping[str, str] = dataclasses.field(
      default_factory=dict, hash=False)

  def __post_init__(self):
    columns = tuple(self.columns)
    object.__setattr__(self, 'columns', columns)
    if not columns:
      raise ValueError('EmbeddingSpec needs at least one embedding column.')
    for column in columns:
      if not isinstance(column, columns_lib.EmbeddingColumn):
        raise TypeError(
            f'EmbeddingSpec columns must come from embedding_column or '
            f'shared_embedding_columns; got {type(column).__name__}: '
            f'{column!r}.')
    if not isinstance(self.optimizer, optimizers.EmbeddingOptimizer):
      raise TypeError(
          'EmbeddingSpec optimizer must be one of '
          f'{sorted(optimizers.OPTIMIZERS)} from this package; got '
          f'{self.optimizer!r}.')
    _check_unique_keys(columns)
    _check_tables(columns)
    self._check_oov_rows()
    if isinstance(self.optimizer, optimizers.FTRL):
      for column in columns:
        optimizers.check_ftrl_learning_rate(
            self.optimizer, column.learning_rate_fn,
            f'learning_rate_fn of column {column.name!r}')

  def _check_oov_rows(self) -> None:
    """Raises for an unknown mode or a table name the columns do not have."""
    oov.check_mode(self.oov_rows, 'EmbeddingSpec oov_rows')
    by_table = dict(self.oov_rows_by_table or {})
    object.__setattr__(self, 'oov_rows_by_table', by_table)
    tables = sorted({c.resolved_table_name for c in self.columns})
    for table, mode in by_table.items():
      oov.check_mode(mode, f'oov_rows_by_table[{table!r}]')
      if table not in tables:
        raise registry.SpecValidationError(
            f'oov_rows_by_table names table {table!r}, which no column uses; '
            f'the tables are {tables}.', 'oov_rows_by_table')

  def oov_rows_of(self, table_name: str) -> str:
    """The OOV mode of one table: its override, else `oov_rows`."""
    return self.oov_rows_by_table.get(table_name, self.oov_rows)

  @property
  def feature_keys(self) -> List[str]:
    """The embedded feature keys, in declaration order."""
    return [c.feature_key for c in self.columns]

  def to_config(self) -> Dict[str, Any]:
    """Returns the JSON-ready dict (see the module docstring).

    Raises:
      registry.SpecSerializationError: for a lambda or another callable that
        cannot be imported back by name or dotted path.
    """
    config = {'format_version': FORMAT_VERSION,
              'optimizer': self.optimizer.to_config(),
              'columns': [c.to_config() for c in self.columns]}
    # Written only when set, so that specs without them keep their JSON.
    if self.oov_rows != oov.RANDOM:
      config['oov_rows'] = self.oov_rows
    if self.oov_rows_by_table:
      config['oov_rows_by_table'] = dict(sorted(
          self.oov_rows_by_table.items()))
    return config

  def to_json(self, indent: Optional[int] = None) -> str:
    """Returns the spec as JSON text; see `to_config`."""
    return json.dumps(self.to_config(), indent=indent, sort_keys=True,
                      allow_nan=False)

  @classmethod
  def from_config(cls, config: Mapping[str, Any],
                  allowed_module_prefixes: Optional[Sequence[str]] = None
                 ) -> 'EmbeddingSpec':
    """Inverse of `to_config`: validates the dict, then builds the spec.

    Args:
      config: the dict form (see the module docstring).
      allowed_module_prefixes: module prefixes whose functions the spec's
        dotted paths may name during this call, in addition to the registered
        functions and the prefixes allowed with
        `registry.allow_module_prefixes` (see `registry`).

    Raises:
      registry.SpecValidationError: (a ValueError) naming the field at fault:
        a wrong type, a missing or unknown key, a value outside an enum, a
        dotted path that is not allowed (refused before any import), or a
        value the constructors refuse.
    """
    if isinstance(config, Mapping) and (
        config.get('format_version') != FORMAT_VERSION):
      raise registry.SpecValidationError(
          f'Unsupported EmbeddingSpec format_version '
          f'{config.get("format_version")!r}; this package reads version '
          f'{FORMAT_VERSION}.', 'format_version')
    with registry.allowing_module_prefixes(allowed_module_prefixes):
      schema.validate_spec(config)
      columns = []
      for index, column in enumerate(config['columns']):
        with schema.at_field(f'columns[{index}]'):
          columns.append(columns_lib.EmbeddingColumn.from_config(column))
      with schema.at_field('optimizer'):
        optimizer = optimizers.EmbeddingOptimizer.from_config(
            config['optimizer'])
    with schema.at_field('columns'):
      return cls(columns=tuple(columns), optimizer=optimizer,
                 oov_rows=config.get('oov_rows', oov.RANDOM),
                 oov_rows_by_table=config.get('oov_rows_by_table', {}))

  @classmethod
  def from_dict(cls, config: Mapping[str, Any],
                allowed_module_prefixes: Optional[Sequence[str]] = None
               ) -> 'EmbeddingSpec':
    """The same as `from_config`."""
    return cls.from_config(config, allowed_module_prefixes)

  @classmethod
  def from_json(cls, text: str,
                allowed_module_prefixes: Optional[Sequence[str]] = None
               ) -> 'EmbeddingSpec':
    """Inverse of `to_json`; see `from_config` for validation and prefixes.

    Raises:
      registry.SpecValidationError: for text that is not JSON, or for any
        `from_config` error.
    """
    try:
      config = json.loads(text)
    except (TypeError, ValueError) as e:
      raise registry.SpecValidationError(
          f'the embedding spec is not valid JSON: {e}') from e
    return cls.from_config(config, allowed_module_prefixes)

  def resolve(self, tf_transform_output: Any = None,
              max_sequence_lengths: Optional[Mapping[str, int]] = None
             ) -> resolved.ResolvedEmbeddingSpec:
    """Returns the spec with concrete table sizes and sequence lengths.

    Args:
      tf_transform_output: a `tft.TFTransformOutput`; needed for
        Transform-vocabulary columns.
      max_sequence_lengths: `{feature_key: recommended length}` from the
        statistics component; needed for `max_sequence_length='auto'`.

    Raises:
      ValueError: when a size or length cannot be resolved, or the columns of
        a shared table turn out to differ in size.
    """
    return resolution.resolve_columns(self.columns, self.optimizer,
                                      tf_transform_output,
                                      max_sequence_lengths,
                                      oov_rows=self.oov_rows_of)

  def transform_vocabularies(self) -> Dict[str, str]:
    """`{feature_key: vocabulary_name}` of the Transform-vocabulary columns."""
    return {c.feature_key: c.categorical_column.base.vocabulary_name
            for c in self.columns
            if isinstance(c.categorical_column.base,
                          categorical.TransformVocabularyColumn)}
