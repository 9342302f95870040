"""A package's public names, imported from their modules on first use (PEP 562).

Packages whose modules pull in heavy dependencies (TFX's orchestration, Beam)
export their API through this, so that code needing one light module (a Beam
worker, the training loop, a benchmark) starts without the rest.
"""

import importlib
from typing import Any, Callable, List, Mapping, Tuple


def module_attributes(package: str, exports: Mapping[str, str],
                      package_globals: Mapping[str, Any]
                     ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
  """``(__getattr__, __dir__)`` for ``package``.

  Args:
    package: the package's ``__name__``.
    exports: public name -> the package module (relative name) defining it.
    package_globals: the package's ``globals()``, for ``dir()``.
  """

  def get_attribute(name: str) -> Any:
    if name not in exports:
      raise AttributeError(f'module {package!r} has no attribute {name!r}')
    module = importlib.import_module(f'{package}.{exports[name]}')
    return getattr(module, name)

  def names() -> List[str]:
    return sorted(set(package_globals) | set(exports))

  return get_attribute, names
