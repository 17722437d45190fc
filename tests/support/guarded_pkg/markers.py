"""Marker files that show a module was imported: one per module and process, in the
directory named by ``GFT_IMPORT_MARKERS`` (nothing is written when it is unset)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "GFT_IMPORT_MARKERS"


def leave(module: str) -> None:
    directory = os.environ.get(ENV)
    if directory:
        (Path(directory) / f"imported-{module}-{os.getpid()}").touch()
