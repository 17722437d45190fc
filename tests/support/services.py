"""Real services the tests talk to, as pytest fixtures and helpers.

S3: moto's server on a free port of 127.0.0.1, over real HTTP, used through aiobotocore.
Fixtures never skip: a service that cannot start fails the tests that need it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

_START_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class S3Service:
    """Where a running moto S3 server listens, and the dummy credentials it accepts."""

    endpoint_url: str
    region_name: str = "us-east-1"
    aws_access_key_id: str = "testing"
    aws_secret_access_key: str = "testing"

    def options(self) -> dict[str, str]:
        """Keyword options for `S3CheckpointStore` (and aiobotocore clients)."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region_name,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
        }

    def client(self, service: str = "s3", **overrides: str) -> Any:
        """An aiobotocore client context manager for `service` on this server."""
        from aiobotocore.session import get_session

        return get_session().create_client(service, **{**self.options(), **overrides})


@pytest.fixture(scope="session")
def s3_service() -> Iterator[S3Service]:
    """A moto S3 server for the whole session (port chosen by the OS: no races)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits forever if the server thread dies; bound the wait so we fail instead.
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(_START_TIMEOUT)
    if starter.is_alive():
        raise RuntimeError(f"moto S3 server did not start within {_START_TIMEOUT}s")
    host, port = server.get_host_and_port()
    try:
        yield S3Service(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
async def s3_bucket(s3_service: S3Service) -> str:
    """A new, empty bucket on the moto server, unique to the test."""
    name = f"ckpt-{uuid.uuid4().hex[:16]}"
    async with s3_service.client() as client:
        await client.create_bucket(Bucket=name)
    return name


@asynccontextmanager
async def iam_enforced(service: S3Service) -> AsyncIterator[dict[str, str]]:
    """Create an IAM user with no permissions, then make moto enforce IAM.

    Yields that user's credentials as `S3CheckpointStore` options; every S3 call made
    with them is denied. Enforcement is turned off again on exit.
    """
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    async with service.client("iam") as iam:
        await iam.create_user(UserName=name)
        key = (await iam.create_access_key(UserName=name))["AccessKey"]
    previous = await _reset_moto_auth(service, "0")
    try:
        yield {
            **service.options(),
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
    finally:
        await _reset_moto_auth(service, previous)


async def _reset_moto_auth(service: S3Service, count: str) -> str:
    """Set how many requests moto serves before enforcing IAM; return the old value."""

    def post() -> str:
        request = urllib.request.Request(
            f"{service.endpoint_url}/moto-api/reset-auth",
            data=count.encode(),
            # Not form-encoded: werkzeug would parse the body away from moto.
            headers={"Content-Type": "application/octet-stream"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.load(response)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])

    return await asyncio.to_thread(post)
