"""The schema of an `EmbeddingSpec`'s JSON form, checked field by field.

`EmbeddingSpec.from_json` / `from_dict` read data that may come from a file,
a TFX `custom_config` or a person's editor, so every field is checked before
any object is built: types (`"is_sequence": "false"` is not a boolean),
required keys, unknown keys (typos are not ignored), enums (combiner,
optimizer and column types) and dotted paths (see `registry`). Every error is
a `registry.SpecValidationError` that names the field, e.g.

  columns[2].categorical_column.is_sequence: expected true or false, got
  "false"

The schema is derived from the dataclasses' fields and type hints (required
means "no default"), so a field added to a column or an optimizer is part of
the schema at once; value ranges (dimension > 0, ...) stay with the
constructors, whose errors `at_field` prefixes with the field path.
"""

import contextlib
import dataclasses
import difflib
import json
import math
import numbers
import typing
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

from components.embedding import categorical
from components.embedding import columns as columns_lib
from components.embedding import initializers
from components.embedding import oov
from components.embedding import optimizers
from components.embedding import registry
from components.embedding import schedules

SpecValidationError = registry.SpecValidationError


def _show(value: Any) -> str:
  """`value` as JSON (so that "false" and false differ), shortened."""
  try:
    text = json.dumps(value, sort_keys=True)
  except (TypeError, ValueError):
    text = repr(value)
  return text if len(text) <= 80 else text[:77] + '...'


def _join(path: str, key: str) -> str:
  return f'{path}.{key}' if path else key


class Rule:
  """Checks one value; `description` completes "expected ..."."""

  description = 'a value'

  def check(self, value: Any, path: str) -> None:
    if not self.accepts(value):
      raise SpecValidationError(
          f'expected {self.description}, got {_show(value)}', path)
    self.check_inside(value, path)

  def accepts(self, value: Any) -> bool:
    """Whether `value` has the right type (contents are checked after)."""
    raise NotImplementedError

  def check_inside(self, value: Any, path: str) -> None:
    """Checks the contents of an accepted value."""


class Kind(Rule):
  """A JSON type, given by a predicate."""

  def __init__(self, description: str, predicate: Callable[[Any], bool]):
    self.description = description
    self._predicate = predicate

  def accepts(self, value: Any) -> bool:
    return self._predicate(value)


def _is_integer(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (isinstance(value, numbers.Real) and not isinstance(value, bool) and
          math.isfinite(value))


INTEGER = Kind('an integer', _is_integer)
NUMBER = Kind('a finite number', _is_number)
BOOLEAN = Kind('true or false', lambda v: isinstance(v, bool))
STRING = Kind('a string', lambda v: isinstance(v, str))
NULL = Kind('null', lambda v: v is None)
OBJECT = Kind('an object', lambda v: isinstance(v, Mapping) and all(
    isinstance(k, str) for k in v))


class Enum(Rule):
  """One of a few strings."""

  def __init__(self, values: Sequence[str]):
    self._values = tuple(values)
    self.description = 'one of ' + ', '.join(_show(v) for v in self._values)

  def accepts(self, value: Any) -> bool:
    return isinstance(value, str) and value in self._values


class AnyOf(Rule):
  """The first alternative whose type fits checks the value."""

  def __init__(self, *rules: Rule):
    self._rules = rules
    self.description = ' or '.join(r.description for r in rules)

  def accepts(self, value: Any) -> bool:
    return any(r.accepts(value) for r in self._rules)

  def check_inside(self, value: Any, path: str) -> None:
    next(r for r in self._rules if r.accepts(value)).check_inside(value, path)


class ListOf(Rule):
  """A list whose items all follow `item`; `length` fixes its length."""

  def __init__(self, item: Rule, min_items: int = 0,
               length: Optional[int] = None):
    self._item, self._min_items, self._length = item, min_items, length
    if length is not None:
      self.description = f'a list of {length} ({item.description})'
    else:
      size = 'a non-empty' if min_items else 'a'
      self.description = f'{size} list of ({item.description})'

  def accepts(self, value: Any) -> bool:
    return isinstance(value, (list, tuple)) and (
        len(value) >= self._min_items) and (
            self._length is None or len(value) == self._length)

  def check_inside(self, value: Any, path: str) -> None:
    for index, item in enumerate(value):
      self._item.check(item, f'{path}[{index}]')


class MapOf(Rule):
  """An object whose keys are any strings and whose values follow `value`."""

  def __init__(self, value: Rule):
    self._value = value
    self.description = f'an object of ({value.description})'

  def accepts(self, value: Any) -> bool:
    return OBJECT.accepts(value)

  def check_inside(self, value: Any, path: str) -> None:
    for key, item in value.items():
      self._value.check(item, _join(path, key))


class Record(Rule):
  """An object with known keys; `fields` maps each to (rule, required)."""

  def __init__(self, description: str,
               fields: Optional[Dict[str, Any]] = None):
    self.description = description
    self.fields: Dict[str, Any] = dict(fields or {})

  def accepts(self, value: Any) -> bool:
    return OBJECT.accepts(value)

  def check_inside(self, value: Any, path: str,
                   ignore: Sequence[str] = ()) -> None:
    for key in value:
      if key not in self.fields and key not in ignore:
        close = difflib.get_close_matches(key, list(self.fields), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ''
        raise SpecValidationError(
            f'unknown key "{key}"{hint} in {self.description}; the keys are '
            f'{sorted(self.fields)}', path)
    for key, (rule, required) in self.fields.items():
      if key in value:
        rule.check(value[key], _join(path, key))
      elif required:
        raise SpecValidationError(
            f'missing required key "{key}" of {self.description}', path)


class Tagged(Rule):
  """An object whose `tag` key picks the `Record` of its other keys."""

  def __init__(self, description: str, tag: str = 'type'):
    self.description = description
    self.tag = tag
    self.variants: Dict[str, Record] = {}

  def accepts(self, value: Any) -> bool:
    return OBJECT.accepts(value)

  def check_inside(self, value: Any, path: str) -> None:
    if self.tag not in value:
      raise SpecValidationError(
          f'missing required key "{self.tag}" of {self.description} (one of '
          f'{sorted(self.variants)})', path)
    Enum(sorted(self.variants)).check(value[self.tag], _join(path, self.tag))
    self.variants[value[self.tag]].check_inside(value, path,
                                                ignore=(self.tag,))


class CallableReference(Rule):
  """A registered name or an allowed dotted path, with JSON parameters.

  Either a string, or `{"name": ...}` / `{"path": ...}` with optional
  `"params": {...}`. Paths are checked against `registry`'s rules here,
  before anything is imported.
  """

  description = ('a registered name or dotted path, or an object with '
                 '"name" or "path" and "params"')

  def __init__(self, kind: type):
    # pylint: disable-next=protected-access
    self._kind, self._label = kind, kind._KIND
    self._record = Record(f'{self._label} reference', {
        'name': (STRING, False), 'path': (STRING, False),
        'params': (OBJECT, False)})

  @property
  def _registry(self) -> Mapping[str, Callable[..., Any]]:
    """The registered functions, read now (registrations may come later)."""
    return self._kind._REGISTRY  # pylint: disable=protected-access

  def accepts(self, value: Any) -> bool:
    return isinstance(value, str) or OBJECT.accepts(value)

  def check_inside(self, value: Any, path: str) -> None:
    if isinstance(value, str):
      if value not in self._registry:
        self._check_path(value, path)
      return
    self._record.check_inside(value, path)
    if ('name' in value) == ('path' in value):
      raise SpecValidationError(
          f'a {self._label} reference needs exactly one of "name" or '
          f'"path", got keys {sorted(value)}', path)
    if 'name' in value:
      self._check_name(value['name'], _join(path, 'name'))
    else:
      self._check_path(value['path'], _join(path, 'path'))
    try:
      json.dumps(value.get('params') or {}, allow_nan=False)
    except (TypeError, ValueError) as e:
      raise SpecValidationError(f'parameters must be JSON values: {e}',
                                _join(path, 'params')) from e

  def _check_name(self, name: str, path: str) -> None:
    if name not in self._registry:
      raise SpecValidationError(
          f'unknown {self._label} name {_show(name)}; registered: '
          f'{self._kind.registered_names()}', path)

  def _check_path(self, dotted: str, path: str) -> None:
    with at_field(path):
      registry.check_dotted_path(dotted, self._label, self._registry.values())


# --- The spec's schema, derived from the dataclasses. ---

SCHEDULE = CallableReference(schedules.LearningRateSchedule)
INITIALIZER = CallableReference(initializers.Initializer)
CATEGORICAL_COLUMN = Tagged('categorical column')


def _rule_for(annotation: Any, named: Mapping[Any, Rule]) -> Rule:
  """The rule of a type hint: int, float, bool, str, Optional, Union, ..."""
  if annotation in named:
    return named[annotation]
  simple = {int: INTEGER, float: NUMBER, bool: BOOLEAN, str: STRING,
            type(None): NULL}
  if annotation in simple:
    return simple[annotation]
  origin, args = typing.get_origin(annotation), typing.get_args(annotation)
  if origin is typing.Union:
    return AnyOf(*(_rule_for(a, named) for a in args))
  if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
    return ListOf(_rule_for(args[0], named))
  if origin is tuple and len(set(args)) == 1:
    return ListOf(_rule_for(args[0], named), length=len(args))
  raise TypeError(f'No schema rule for type hint {annotation!r}.')


def record_of(cls: type, description: str,
              overrides: Optional[Mapping[str, Rule]] = None,
              named: Optional[Mapping[Any, Rule]] = None) -> Record:
  """A `Record` of a dataclass's init fields; required = without default."""
  overrides, named = dict(overrides or {}), dict(named or {})
  hints = typing.get_type_hints(cls)
  fields = {}
  for field in dataclasses.fields(cls):
    if not field.init:
      continue
    rule = overrides.get(field.name) or _rule_for(hints[field.name], named)
    required = (field.default is dataclasses.MISSING and
                field.default_factory is dataclasses.MISSING)
    fields[field.name] = (rule, required)
  return Record(description, fields)


_NAMED = {categorical.CategoricalColumn: CATEGORICAL_COLUMN}
for _kind, _cls in categorical.COLUMN_TYPES.items():
  CATEGORICAL_COLUMN.variants[_kind] = record_of(
      _cls, f'{_kind} column',
      overrides={'vocabulary_list': ListOf(AnyOf(STRING, INTEGER),
                                           min_items=1)},
      named=_NAMED)

OPTIMIZER = Tagged('embedding optimizer')
for _name, _cls in optimizers.OPTIMIZERS.items():
  OPTIMIZER.variants[_name] = record_of(
      _cls, f'{_name} optimizer',
      overrides={'learning_rate': AnyOf(NUMBER, SCHEDULE)})

EMBEDDING_COLUMN = record_of(
    columns_lib.EmbeddingColumn, 'embedding column',
    overrides={
        'combiner': Enum(columns_lib.COMBINERS),
        'initializer': AnyOf(NULL, INITIALIZER),
        'learning_rate_fn': AnyOf(NULL, SCHEDULE),
        'max_sequence_length': AnyOf(INTEGER, Enum([columns_lib.AUTO])),
    },
    named=_NAMED)

OOV_ROWS = Enum(oov.OOV_ROWS)


def _spec_record() -> Record:
  """The spec's own fields (from `EmbeddingSpec`'s), plus format_version."""
  from components.embedding import spec as spec_lib  # pylint: disable=g-import-not-at-top
  record = record_of(spec_lib.EmbeddingSpec, 'embedding spec', overrides={
      'columns': ListOf(EMBEDDING_COLUMN, min_items=1),
      'optimizer': OPTIMIZER,
      'oov_rows': OOV_ROWS,
      'oov_rows_by_table': MapOf(OOV_ROWS),
  })
  record.fields['format_version'] = (INTEGER, True)
  return record


def validate_spec(config: Any) -> None:
  """Raises `SpecValidationError`, naming the field, unless `config` fits."""
  if not OBJECT.accepts(config):
    raise SpecValidationError(
        f'an embedding spec must be a JSON object, got {_show(config)}')
  _spec_record().check(config, '')


@contextlib.contextmanager
def at_field(path: str) -> Iterator[None]:
  """Prefixes errors raised inside with `path`, unless one is named already.

  Constructors raise ValueError / TypeError for values of the right type but
  out of range (a dimension of 0, duplicate tables); read from JSON, they
  become `SpecValidationError`s that say where.
  """
  try:
    yield
  except SpecValidationError as e:
    if e.field_path:
      raise
    raise SpecValidationError(str(e), path) from e
  except (ValueError, TypeError) as e:
    raise SpecValidationError(str(e), path) from e
