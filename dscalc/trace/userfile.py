"""A user's model-building .py file - imported once per run, its output kept off the report, what it raises
reported as one line - and the class or function in it that builds the model. Shared by the torch loader
(`trace.loaders`) and the Keras one (`trace.keras`); no framework is imported here."""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from dscalc.errors import BadInput, user_code


def import_file(path: Path, prefix: str, quiet: Callable[[], contextlib.AbstractContextManager[Any]]) -> ModuleType:
    """The module of `path`, imported under `quiet()` the first time (a failed import is not kept)."""
    module_name = f"{prefix}_{path.stem}_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise BadInput(f"cannot import {path}", "model")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            with quiet(), user_code(f"importing {path}"):
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return module


def factory(module: ModuleType, path: Path, name: str | None, base: type) -> Any:
    """`name` from the module, or (no name) its one subclass of `base` - else its one function - defined there."""
    if name is not None:
        if not hasattr(module, name):
            raise BadInput(f"{path} defines no {name!r}", "model")
        found = getattr(module, name)
        if inspect.ismodule(found) or not callable(found):
            kind = "a module" if inspect.ismodule(found) else f"a value of type {type(found).__name__}"
            raise BadInput(f"{path}:{name} is {kind}, not a model class or a function that builds one", "model")
        return found
    own = [o for o in vars(module).values() if getattr(o, "__module__", None) == module.__name__]
    candidates: list[Any] = [o for o in own if inspect.isclass(o) and issubclass(o, base)] or \
        [o for o in own if inspect.isfunction(o)]
    if len(candidates) != 1:
        names = ", ".join(sorted(c.__name__ for c in candidates)) or "none"
        raise BadInput(f"{path} defines {len(candidates)} candidate models ({names}); name one as {path}:Name",
                       "model")
    return candidates[0]
