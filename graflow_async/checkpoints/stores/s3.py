"""Checkpoints as objects in an S3 (or S3-compatible) bucket, through aiobotocore."""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from typing import Any

from graflow_async.checkpoints.stores.base import CheckpointStore, check_name
from graflow_async.exceptions import CheckpointError

__all__ = ["S3CheckpointStore", "split_s3_uri"]

ENDPOINT_ENV = "AWS_ENDPOINT_URL"
_session: Any = None
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    "AccessDenied 403 Forbidden AllAccessDisabled InvalidAccessKeyId SignatureDoesNotMatch "
    "InvalidToken ExpiredToken".split()
)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``"s3://bucket/some/key"`` -> ``("bucket", "some/key")``; CheckpointError if not S3."""
    if not uri.startswith("s3://"):
        raise CheckpointError(f"not an S3 location: {uri!r} (expected s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise CheckpointError(f"S3 location {uri!r} names no bucket")
    return bucket, key


class S3CheckpointStore(CheckpointStore):
    """Checkpoints as objects under `prefix` in `bucket`; locations are ``s3://`` URIs.

    The endpoint is `endpoint_url`, else ``AWS_ENDPOINT_URL``, else AWS itself;
    credentials and region not given here come from botocore's usual chain (env,
    config files, instance roles). Each request is tried up to `max_attempts` times
    (botocore's "standard" retry mode). The client is created on first use and kept until
    `aclose`. S3 writes are atomic by nature. Botocore errors are mapped to
    `CheckpointError` naming the bucket and key (the botocore error is its cause).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        max_attempts: int = 3,
        signing_key: bytes | str | None = None,
    ) -> None:
        super().__init__(signing_key=signing_key)
        if not bucket or "/" in bucket:
            raise CheckpointError(f"invalid S3 bucket name {bucket!r}")
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        options = {
            "endpoint_url": self.endpoint_url,
            "region_name": region_name,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
        }
        self._client_options = {k: v for k, v in options.items() if v is not None}
        self._max_attempts = max_attempts
        self._client: Any = None
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"S3CheckpointStore('s3://{self.bucket}/{self.prefix}')"

    def location(self, name: str) -> str:
        return self._uri(self.prefix + check_name(name).as_posix())

    async def write(self, location: str, data: bytes | Sequence[bytes]) -> str:
        key = self._key(location)
        if not isinstance(data, bytes):
            data = b"".join(data)
        client = await self._get_client()
        with self._errors("write", key):
            await client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return self._uri(key)

    async def create(self, location: str, data: bytes) -> bool:
        """A conditional put (``If-None-Match: *``): S3 refuses it when the key exists."""
        from botocore.exceptions import ClientError

        key = self._key(location)
        client = await self._get_client()
        with self._errors("create", key):
            try:
                await client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
        return True

    async def read(self, location: str) -> bytes:
        key = self._key(location)
        client = await self._get_client()
        with self._errors("read", key):
            response = await client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def list(self, prefix: str = "") -> builtins.list[str]:
        full_prefix = self.prefix + prefix
        client = await self._get_client()
        keys: builtins.list[str] = []
        with self._errors("list", full_prefix):
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(self._uri(key) for key in keys if not key.endswith("/"))

    async def delete(self, location: str) -> None:
        key = self._key(location)
        client = await self._get_client()
        with self._errors("delete", key):
            await client.delete_object(Bucket=self.bucket, Key=key)

    async def aclose(self) -> None:
        await super().aclose()
        self._client = None
        await self._stack.aclose()

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _key(self, location: str) -> str:
        if not location.startswith("s3://"):
            return self.prefix + check_name(location).as_posix()
        bucket, key = split_s3_uri(location)
        if bucket != self.bucket:
            raise CheckpointError(f"location {location!r} is in bucket {bucket!r}; this store serves {self.bucket!r}")
        if not key or key.endswith("/"):
            raise CheckpointError(f"S3 location {location!r} names no object key")
        return key

    async def _get_client(self) -> Any:
        self._check_open()
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._create_client()
        return self._client

    async def _create_client(self) -> Any:
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
        except ImportError as exc:
            raise CheckpointError("S3 checkpoints need aiobotocore: pip install 'graflow-async[s3]'") from exc
        config = AioConfig(
            connect_timeout=10,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": self._max_attempts},
        )
        global _session
        if _session is None:  # one session per process: it caches the service models
            _session = get_session()  # (loading them costs ~50 ms per new session)
        with self._errors("connect to", None, ValueError):  # ValueError: bad endpoint URL
            creator = _session.create_client("s3", config=config, **self._client_options)
            return await self._stack.enter_async_context(creator)

    @contextmanager
    def _errors(self, action: str, key: str | None, *also: type[Exception]) -> Iterator[None]:
        """Map botocore and network errors raised in the block to CheckpointError."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = repr(self._uri(key)) if key is not None else f"S3 bucket {self.bucket!r}"
        try:
            yield
        except ClientError as exc:
            raise self._client_error(action, where, exc) from exc
        except (BotoCoreError, OSError, *also) as exc:
            raise CheckpointError(f"cannot {action} {where}: {exc}") from exc

    def _client_error(self, action: str, where: str, exc: Any) -> CheckpointError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        detail = f"{code}: {error.get('Message') or exc}"
        if code == "NoSuchBucket":
            return CheckpointError(f"cannot {action} {where}: S3 bucket {self.bucket!r} does not exist")
        if code in _NOT_FOUND:
            return CheckpointError(f"checkpoint not found: {where}")
        if code in _DENIED:
            return CheckpointError(f"cannot {action} {where}: access denied ({detail})")
        return CheckpointError(f"cannot {action} {where}: S3 error {detail}")
