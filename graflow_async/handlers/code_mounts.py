"""What a container needs of this host's code to run a task (``mount_code=True``):
graflow_async, the packages it imports (its install requirements, found from package
metadata), and the task's own module. Each is bind-mounted read-only, so an image needs
only a compatible Python.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from graflow_async.define.docker_options import CODE_DIR, LIB_DIR
from graflow_async.exceptions import HandlerError

MAIN_ALIAS = "__graflow_main__"  # the module name a script's tasks are imported by in the container
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def function_ref(func: Callable[..., Any]) -> str:
    """``module:qualname`` the container imports the function by; HandlerError for a
    function that cannot be imported (a nested function or a lambda)."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or "<" in qualname:
        raise HandlerError(
            f"{qualname or func!r} cannot run in a container: a task for another process must be a "
            "module-level function (nested functions and lambdas cannot be imported there)"
        )
    return f"{MAIN_ALIAS if module == '__main__' else module}:{qualname}"


def code_mounts(func: Callable[..., Any]) -> tuple[tuple[str, str], ...]:
    """(host path, container path) pairs: the library and the module defining `func`."""
    return (*library_mounts(), *_module_mount(func.__module__))


@functools.cache
def library_mounts() -> tuple[tuple[str, str], ...]:
    """graflow_async and the top-level packages of every distribution it requires."""
    package = Path(__file__).resolve().parent.parent
    found = {package.name: package}
    for dist in _required_distributions("graflow-async"):
        for top in _top_level(dist):
            found.setdefault(top.name, top)
    return tuple((str(path), f"{LIB_DIR}/{name}") for name, path in sorted(found.items()))


def _required_distributions(name: str) -> Iterator[metadata.Distribution]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        key = re.sub(r"[-_.]+", "-", current).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            continue
        if key != "graflow-async":
            yield dist
        for requirement in dist.requires or ():
            if "extra" in requirement.partition(";")[2]:
                continue  # an optional extra: not needed to run a task
            match = _NAME.match(requirement)
            if match:
                todo.append(match[1])


def _top_level(dist: metadata.Distribution) -> Iterator[Path]:
    """The top-level modules and packages a distribution installed."""
    seen: set[str] = set()
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0] in seen or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info")):
            continue
        first = parts[0]
        if len(parts) == 1 and not first.endswith((".py", ".so", ".pyd")):
            continue  # .pth files and the like
        if first == "__pycache__":
            continue
        seen.add(first)
        path = Path(str(dist.locate_file(first)))
        if path.exists():
            yield path


def _module_mount(module_name: str) -> tuple[tuple[str, str], ...]:
    if module_name == "__main__":
        main = sys.modules["__main__"]
        path = getattr(main, "__file__", None)
        if not path:
            raise HandlerError("a task defined in an interactive session cannot run in a container")
        return ((str(Path(path).resolve()), f"{CODE_DIR}/{MAIN_ALIAS}.py"),)
    top = module_name.partition(".")[0]
    if top == "graflow_async":
        return ()
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    spots = {str(Path(p).resolve()) for p in getattr(module, "__path__", None) or ()}
    if module is not None and not file and len(spots) == 1:  # a namespace package in one directory
        return ((spots.pop(), f"{CODE_DIR}/{top}"),)
    if module is None or not file:
        raise HandlerError(f"cannot find the code of module {module_name!r} to mount in the container")
    path = Path(file).resolve()
    if hasattr(module, "__path__"):  # a package: mount its directory
        return ((str(path.parent), f"{CODE_DIR}/{top}"),)
    return ((str(path), f"{CODE_DIR}/{path.name}"),)
