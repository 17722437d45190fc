"""Finding an object by its import path, ``module:attr`` (attr may be dotted), as the
CLI, `resume` and the web app's ``--workflow`` name workflows. The current directory is
importable, as for ``python -m``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, TypeVar

T = TypeVar("T")


def load_object(ref: str) -> Any:
    """Import ``module:attr``; LookupError saying why when there is no such object."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise LookupError(f"expected MODULE:ATTR, got {ref!r}")
    importable_cwd()
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise LookupError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def load_instance(ref: str, kind: type[T], what: str) -> T:
    """`load_object` of a `kind` (a workflow...): LookupError as there, TypeError naming
    what `ref` is instead of `what`."""
    obj = load_object(ref)
    if not isinstance(obj, kind):
        raise TypeError(f"{ref} is {type(obj).__name__}, not a {what}")
    return obj


def importable_cwd() -> None:
    """Make the current directory importable (as ``python -m`` does)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
