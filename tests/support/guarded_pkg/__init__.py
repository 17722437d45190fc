"""A package workers import with ``--import guarded_pkg`` in tests/integration/test_hardening.py.

Importing the package imports `guarded_pkg.eager` too, so a worker may run its tasks;
`guarded_pkg.lazy` and `guarded_pkg.__main__` are imported by nobody at a worker's
start, and importing either leaves a marker file (see `markers.leave`): an entry naming
them must never make a worker import them.
"""

from . import eager

__all__ = ["eager"]
