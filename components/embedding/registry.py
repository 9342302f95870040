"""Callables that remember how to serialise themselves.

Learning-rate schedules and table initializers travel inside the JSON form of
an `EmbeddingSpec` (TFX `custom_config`, compiled Kubeflow pipelines), where
pickles are not acceptable. A callable is therefore described either by a
registered name plus JSON parameters, or by the dotted path of a module-level
function plus JSON parameters. This module holds the machinery shared by
`schedules` and `initializers`; each of those owns one registry.

A spec is data, so a dotted path is not an arbitrary import. It resolves only
to
  (a) a function registered with a registry: the built-in schedules and
      initializers (by name, or by their own dotted path such as
      "components.embedding.schedules.constant") and those added with
      `LearningRateSchedule.register` / `Initializer.register`; or
  (b) a function defined in a module under a prefix the user declared, for
      the whole process with `allow_module_prefixes('my_company.models')`, or
      for one read with `EmbeddingSpec.from_json(text,
      allowed_module_prefixes=['my_company.models'])`.
Any other path ("os.system", "this.s") is refused before anything is
imported, with a `SpecValidationError` saying how to allow it.
"""

import contextlib
import contextvars
import importlib
import inspect
import json
import sys
from typing import (Any, Callable, Dict, Iterable, Iterator, Mapping, Optional,
                    Tuple)


class SpecSerializationError(ValueError):
  """A part of an embedding spec cannot be written to or read from JSON."""


class SpecValidationError(SpecSerializationError):
  """A spec's JSON (or dict) form is invalid; the message names the field.

  Attributes:
    field_path: where the error is, e.g. "columns[2].dimension" ('' for the
      whole document or when no single field is at fault).
  """

  def __init__(self, message: str, field_path: str = ''):
    super().__init__(f'{field_path}: {message}' if field_path else message)
    self.field_path = field_path


# Module prefixes allowed for the whole process, and for the current read.
_PROCESS_PREFIXES: Tuple[str, ...] = ()
_SCOPED_PREFIXES: contextvars.ContextVar = contextvars.ContextVar(
    'scoped_module_prefixes', default=())


def _checked_prefixes(prefixes: Iterable[str]) -> Tuple[str, ...]:
  """Returns `prefixes` as a tuple, raising for one that is not a module name."""
  if isinstance(prefixes, str):
    prefixes = (prefixes,)
  checked = []
  for prefix in prefixes:
    if not _is_dotted_name(prefix):
      raise ValueError(
          f'Module prefix {prefix!r} must be a module name such as '
          '"my_company" or "my_company.models".')
    checked.append(prefix)
  return tuple(checked)


def _is_dotted_name(name: Any) -> bool:
  return isinstance(name, str) and bool(name) and all(
      part.isidentifier() for part in name.split('.'))


def allow_module_prefixes(*prefixes: str) -> None:
  """Lets spec dotted paths name functions in modules under `prefixes`.

  For the whole process, e.g. in the module that declares a pipeline and in
  the trainer process that reads its spec back:
  `registry.allow_module_prefixes('my_company.models')` accepts
  "my_company.models.schedules.warmup" and "my_company.models.init.zeros".
  A prefix matches whole module names: "my" does not allow "mypackage".

  Raises:
    ValueError: for a prefix that is not a dotted module name.
  """
  global _PROCESS_PREFIXES
  added = [p for p in _checked_prefixes(prefixes)
           if p not in _PROCESS_PREFIXES]
  _PROCESS_PREFIXES = _PROCESS_PREFIXES + tuple(added)


def allowed_module_prefixes() -> Tuple[str, ...]:
  """The module prefixes allowed now (process-wide and for this read)."""
  return _PROCESS_PREFIXES + tuple(
      p for p in _SCOPED_PREFIXES.get() if p not in _PROCESS_PREFIXES)


@contextlib.contextmanager
def allowing_module_prefixes(prefixes: Optional[Iterable[str]]
                            ) -> Iterator[None]:
  """Allows `prefixes` inside the `with` block only (see `from_json`)."""
  token = _SCOPED_PREFIXES.set(
      _SCOPED_PREFIXES.get() + _checked_prefixes(prefixes or ()))
  try:
    yield
  finally:
    _SCOPED_PREFIXES.reset(token)


def _under_allowed_prefix(module_name: str) -> bool:
  return any(module_name == prefix or module_name.startswith(prefix + '.')
             for prefix in allowed_module_prefixes())


def _path_of_loaded(fn: Any) -> Optional[str]:
  """'module.qualname' of a module-level function, without importing."""
  module = getattr(fn, '__module__', None)
  qualname = getattr(fn, '__qualname__', '')
  if not module or '<' in qualname or '.' in qualname:
    return None
  return f'{module}.{qualname}'


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


def check_dotted_path(path: Any, what: str,
                      registered: Iterable[Callable[..., Any]] = ()
                     ) -> Optional[Callable[..., Any]]:
  """Refuses, without importing, a path a spec may not name.

  Returns:
    The registered function `path` names, or None for a path under an
    allowed module prefix (still to be imported).

  Raises:
    SpecValidationError: for a malformed path, or one that names neither a
      registered function nor a module under an allowed prefix.
  """
  if not isinstance(path, str) or '.' not in path or not _is_dotted_name(path):
    raise SpecValidationError(
        f'{what}: {path!r} is neither a registered name nor a dotted path '
        'such as "my_package.my_module.my_function".')
  for fn in registered:
    if _path_of_loaded(fn) == path:
      return fn
  module_name = path.rpartition('.')[0]
  if not _under_allowed_prefix(module_name):
    package = module_name.split('.')[0]
    raise SpecValidationError(
        f'{what}: dotted path {path!r} is not allowed (nothing was '
        'imported). A spec names only registered functions, or functions in '
        'modules under prefixes the user declares (now: '
        f'{list(allowed_module_prefixes())}): declare its package with '
        f'registry.allow_module_prefixes({package!r}) or '
        'EmbeddingSpec.from_json(text, allowed_module_prefixes=[...]), or '
        'register the function.')
  return None


def resolve_dotted_path(path: Any, what: str,
                        registered: Iterable[Callable[..., Any]] = ()) -> Any:
  """Returns the function `path` names, if the spec may name it.

  Args:
    path: 'package.module.function'.
    what: what the function is for, used in error messages.
    registered: the registered functions, accepted by their own dotted path.

  Raises:
    SpecValidationError: if `path` is not a dotted path, names neither a
      registered function nor one under an allowed module prefix (refused
      before anything is imported), does not import, or names an object
      defined outside the allowed prefixes.
  """
  registered_fn = check_dotted_path(path, what, registered)
  if registered_fn is not None:
    return registered_fn
  module_name, _, attribute = path.rpartition('.')
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise SpecValidationError(
        f'{what}: cannot import module {module_name!r} of {path!r}: {e}'
    ) from e
  if not hasattr(module, attribute):
    raise SpecValidationError(
        f'{what}: module {module_name!r} has no attribute {attribute!r}.')
  found = getattr(module, attribute)
  defined_in = getattr(found, '__module__', None)
  if not isinstance(defined_in, str) or not _under_allowed_prefix(defined_in):
    raise SpecValidationError(
        f'{what}: {path!r} is {found!r}, defined in module {defined_in!r}, '
        'outside the allowed module prefixes; name the function where it is '
        'defined, under an allowed prefix.')
  return found


def dotted_path_of(fn: Any) -> Optional[str]:
  """Returns the dotted path that imports back to `fn`, or None if none does.

  Lambdas, closures, bound methods, callable instances and functions defined
  in `__main__` have no such path (the process that reads the JSON back would
  not find them).
  """
  if not inspect.isfunction(fn):
    return None
  path = _path_of_loaded(fn)
  if path is None or fn.__module__ == '__main__':
    return None
  module = sys.modules.get(fn.__module__)  # Loaded: nothing is imported.
  found = getattr(module, fn.__qualname__, None)
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
    if isinstance(name, str) and name in self._REGISTRY:
      self._name, self._path = name, None
      self._fn = self._REGISTRY[name]
    else:
      self._name, self._path = None, name
      self._fn = resolve_dotted_path(name, self._KIND,
                                     self._REGISTRY.values())
      if not callable(self._fn):
        raise SpecValidationError(f'{self._KIND} {name!r} is not callable.')
    self._check_signature()

  @classmethod
  def register(cls, name: str, fn: Callable[..., Any]) -> None:
    """Registers the module-level function `fn` under `name`.

    A spec may then name it by `name` or by its dotted path. Register it in
    every process that reads the spec (the pipeline's and the trainer's), e.g.
    at import of the module that defines it.

    Raises:
      ValueError: for a name already taken by another function, or an `fn`
        that is not a module-level function.
    """
    if not isinstance(name, str) or not name or '.' in name:
      raise ValueError(f'A {cls._KIND} name must be a non-empty string '
                       f'without ".", got {name!r}.')
    if cls._REGISTRY.get(name, fn) is not fn:
      raise ValueError(f'{cls._KIND} name {name!r} is already registered '
                       f'for {cls._REGISTRY[name]!r}.')
    if dotted_path_of(fn) is None:
      raise ValueError(f'Only module-level functions can be registered as '
                       f'{cls._KIND}s (they serialise by name); got {fn!r}.')
    if '_REGISTRY' not in cls.__dict__:  # Never write into a parent's dict.
      cls._REGISTRY = dict(cls._REGISTRY)
    cls._REGISTRY[name] = fn

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
  for name, registered in cls._REGISTRY.items():
    if registered is fn:
      return {'name': name, 'params': {}}
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
