"""Callables that remember how to serialise themselves.

Learning-rate schedules and table initializers travel inside the JSON form of
an `EmbeddingSpec` (TFX `custom_config`, compiled Kubeflow pipelines), where
pickles are not acceptable. A callable is therefore described either by a
registered name plus JSON parameters, or by the importable dotted path of a
module-level function plus JSON parameters. This module holds the machinery
shared by `schedules` and `initializers`; each of those owns one registry.
"""

import importlib
import inspect
import json
from typing import Any, Callable, Dict, Mapping, Optional


class SpecSerializationError(ValueError):
  """A part of an embedding spec cannot be written to JSON."""


def check_json_params(params: Mapping[str, Any], what: str) -> Dict[str, Any]:
  """Returns `params` as a plain dict, or raises if it is not JSON-serialisable.

  Args:
    params: keyword parameters of a registered callable.
    what: a description of the callable, used in the error message.

  Raises:
    ValueError: if a parameter value cannot be written to JSON.
  """
  params = dict(params)
  try:
    json.dumps(params, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(
        f'The parameters of {what} must be JSON values (numbers, strings, '
        f'booleans, lists, None); got {params!r}: {e}') from e
  return params


def import_dotted_path(path: str, what: str) -> Any:
  """Imports and returns the object named by `path` ('package.module.name').

  Raises:
    ValueError: if `path` is not a dotted path or does not name an object.
  """
  if not isinstance(path, str) or '.' not in path:
    raise ValueError(
        f'{what}: {path!r} is neither a registered name nor a dotted path '
        'such as "my_package.my_module.my_function".')
  module_name, _, attribute = path.rpartition('.')
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(
        f'{what}: cannot import module {module_name!r} of {path!r}: {e}') from e
  try:
    return getattr(module, attribute)
  except AttributeError as e:
    raise ValueError(
        f'{what}: module {module_name!r} has no attribute {attribute!r}.'
    ) from e


def dotted_path_of(fn: Any) -> Optional[str]:
  """Returns the dotted path that imports back to `fn`, or None if none does.

  Lambdas, closures, bound methods, callable instances and functions defined
  in `__main__` have no such path (the process that reads the JSON back would
  not find them).
  """
  if not inspect.isfunction(fn):
    return None
  module = getattr(fn, '__module__', None)
  qualname = getattr(fn, '__qualname__', '')
  if not module or module == '__main__' or '<' in qualname or '.' in qualname:
    return None
  path = f'{module}.{qualname}'
  try:
    found = import_dotted_path(path, 'callable')
  except ValueError:
    return None
  return path if found is fn else None


class NamedCallable:
  """A callable built from a registry name or a dotted path, plus parameters.

  Subclasses set `_REGISTRY` (name -> function) and `_KIND` (used in error
  messages) and implement `__call__`. The registered function or the function
  at the dotted path receives the call's arguments followed by the parameters
  as keyword arguments.
  """

  _REGISTRY: Dict[str, Callable[..., Any]] = {}
  _KIND = 'callable'
  _CALL_ARGS = 1

  def __init__(self, name: str, **params: Any):
    self._params = check_json_params(params, f'{self._KIND} {name!r}')
    if name in self._REGISTRY:
      self._name, self._path = name, None
      self._fn = self._REGISTRY[name]
    else:
      self._name, self._path = None, name
      self._fn = import_dotted_path(name, self._KIND)
      if not callable(self._fn):
        raise ValueError(f'{self._KIND} {name!r} is not callable.')
    self._check_signature()

  def _check_signature(self) -> None:
    """Raises now, not at training time, if the parameters do not fit."""
    try:
      signature = inspect.signature(self._fn)
    except (TypeError, ValueError):
      return
    try:
      signature.bind(*([None] * self._CALL_ARGS), **self._params)
    except TypeError as e:
      accepted = [p for p in signature.parameters][self._CALL_ARGS:]
      raise ValueError(
          f'{self._KIND} {self.label!r} does not accept parameters '
          f'{sorted(self._params)}: {e}. Accepted parameters: {accepted}.'
      ) from e

  @classmethod
  def registered_names(cls):
    """Returns the sorted names of the registered callables."""
    return sorted(cls._REGISTRY)

  @property
  def label(self) -> str:
    """The registered name, or the dotted path."""
    return self._name or self._path

  @property
  def params(self) -> Dict[str, Any]:
    """A copy of the keyword parameters."""
    return dict(self._params)

  def to_config(self) -> Dict[str, Any]:
    """Returns the JSON-ready form `{"name"|"path": ..., "params": {...}}`."""
    key = 'name' if self._name else 'path'
    return {key: self.label, 'params': dict(self._params)}

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> 'NamedCallable':
    """Inverse of `to_config`; also accepts a function's dotted path alone."""
    if isinstance(config, str):
      return cls(config)
    unknown = set(config) - {'name', 'path', 'params'}
    if unknown or ('name' in config) == ('path' in config):
      raise ValueError(
          f'A {cls._KIND} config needs exactly one of "name" or "path" and '
          f'optionally "params"; got {dict(config)!r}.')
    return cls(config.get('name') or config['path'],
               **(config.get('params') or {}))

  def __eq__(self, other: Any) -> bool:
    return (type(other) is type(self) and
            self.to_config() == other.to_config())

  def __hash__(self) -> int:
    return hash((type(self).__name__, json.dumps(self.to_config(),
                                                 sort_keys=True)))

  def __repr__(self) -> str:
    params = ', '.join(f'{k}={v!r}' for k, v in sorted(self._params.items()))
    arguments = ', '.join([repr(self.label)] + ([params] if params else []))
    return f'{type(self).__name__}({arguments})'


def callable_to_config(fn: Any, cls: type,
                       what: str) -> Optional[Dict[str, Any]]:
  """Serialises `fn`: a `cls` instance, a module-level function, or None.

  Args:
    fn: the callable (or None) held by a column or an optimizer.
    cls: the `NamedCallable` subclass expected (schedules or initializers).
    what: where `fn` sits, e.g. "learning_rate_fn of column 'genre'".

  Raises:
    SpecSerializationError: for lambdas, closures and other callables that
      cannot be imported back by dotted path.
  """
  if fn is None:
    return None
  if isinstance(fn, cls):
    return fn.to_config()
  path = dotted_path_of(fn)
  if path is not None:
    return {'path': path, 'params': {}}
  raise SpecSerializationError(
      f'{what} is {fn!r}, which cannot be serialised to JSON (lambdas, '
      f'closures, callable objects and functions of __main__ cannot be '
      f'imported back). Use a registered {cls._KIND} such as '
      f'{cls.registered_names()} through its helper, or a module-level '
      f'function given by dotted path ("my_package.my_module.my_function").')


def callable_from_config(config: Any, cls: type) -> Any:
  """Inverse of `callable_to_config`."""
  if config is None:
    return None
  return cls.from_config(config)
