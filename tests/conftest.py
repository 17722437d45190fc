"""The suite's root conftest: the service fixtures come from tests/support/ as plugins.

Tests are sorted by what they need: ``unit/`` (nothing but the interpreter),
``integration/`` (real services and processes), ``e2e/`` (whole user paths). The
helpers they share live in ``support/``, which is on ``sys.path`` (pyproject's pytest
``pythonpath``), so tests, worker processes and containers import them by plain name
(``import remote_flows``): the plugins below are those same modules, never a second copy
under another name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

pytest_plugins = [
    "docker_engine",  # docker_engine
    "redis_faults",  # fault_proxy
    "redis_server",  # redis_server, redis_url, client
    "services",  # s3_service, s3_bucket
    "worker_processes",  # workers, pool
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's ``--dist loadgroup`` (`make test` runs ``-n 2``), the tests of a
    module stay on one worker, in their order, so that its module-scoped servers, workers
    and browser start once; and every test of the private Docker engine goes to the same
    worker, so that one dockerd serves them all."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        group = "docker" if "docker_engine" in fixtures else item.path.stem
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def log_capture() -> Iterator[list[dict]]:
    """structlog's capture_logs, leaving structlog as unconfigured as it found it."""
    was_configured = structlog.is_configured()
    try:
        with capture_logs() as entries:
            yield entries
    finally:
        if not was_configured:
            structlog.reset_defaults()
