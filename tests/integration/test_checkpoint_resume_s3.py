"""Checkpoints and resume on S3 (SPEC section 6), on moto's server over real HTTP: a
store named by URI or given as an object with its options, prefixes kept on resume, a
path override, a missing bucket or key, an unreachable endpoint."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from etl_flow import Crash, crashed_run, etl
from services import S3Service

from graflow_async import CheckpointError, resume, run, task, workflow
from graflow_async.checkpoints import S3CheckpointStore

KEY_ENV = "GRAFLOW_CHECKPOINT_KEY"


@pytest.fixture
def s3_env(s3_service: S3Service, monkeypatch: pytest.MonkeyPatch) -> S3Service:
    """Point botocore at moto's server through the environment, as a deployment would."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_service.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_service.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_service.aws_secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_service.region_name)
    monkeypatch.delenv(KEY_ENV, raising=False)
    return s3_service


async def s3_keys(service: S3Service, bucket: str) -> list[str]:
    async with service.client() as client:
        listing = await client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", ()))


async def test_s3_store_by_uri_then_resume(s3_env: S3Service, s3_bucket: str) -> None:
    calls: Counter[str] = Counter()
    locations: list[str] = []
    wf = etl(calls, {}, locations)
    await crashed_run(wf, run_id="run-s3", checkpoint_store=f"s3://{s3_bucket}/runs", initial_channel={"seed": 13})
    assert locations == [f"s3://{s3_bucket}/runs/run-s3/1.ckpt"]
    assert await s3_keys(s3_env, s3_bucket) == ["runs/run-s3/1.ckpt"]

    result = await resume(locations[0], workflow=wf)
    assert result.output == "loaded 60 from 3 rows (seed 13)"
    assert result.run_id == "run-s3"
    assert calls == {"extract": 1, "transform": 2, "load": 1}


async def test_s3_resumed_run_keeps_checkpointing_under_the_same_prefix(s3_env: S3Service, s3_bucket: str) -> None:
    locations: list[str] = []

    @task(inject_context=True)
    async def saver(context) -> str:
        n = 0 if context.resumed_metadata is None else context.resumed_metadata["n"]
        location = await context.checkpoint(metadata={"n": n + 1})
        if n == 0:
            locations.append(location)
            raise Crash("gone")
        return location

    with workflow("s3-again") as wf:
        wf.add(saver)
    await crashed_run(wf, run_id="r", checkpoint_store=f"s3://{s3_bucket}/deep/prefix")
    result = await resume(locations[0], workflow=wf)
    assert result.output == f"s3://{s3_bucket}/deep/prefix/r/2.ckpt"
    assert await s3_keys(s3_env, s3_bucket) == [
        "deep/prefix/r/1.ckpt",
        "deep/prefix/r/2.ckpt",
        "deep/prefix/r/completed",  # the resumed run completed
    ]


async def test_s3_path_override_and_a_missing_bucket(s3_env: S3Service, s3_bucket: str, tmp_path: Path) -> None:
    @task(inject_context=True)
    async def saver(context) -> list[str]:
        if context.resumed_metadata is not None:
            return ["resumed"]
        with pytest.raises(CheckpointError) as refused:
            await context.checkpoint(path="s3://nonexistent-bucket/x.ckpt")
        return [await context.checkpoint(path=f"s3://{s3_bucket}/exact/key.ckpt", metadata={}), str(refused.value)]

    with workflow("s3-path") as wf:
        wf.add(saver)
    location, message = (await run(wf, checkpoint_store=tmp_path)).output
    assert location == f"s3://{s3_bucket}/exact/key.ckpt"
    assert "nonexistent-bucket" in message
    assert "does not exist" in message
    assert (await resume(location, workflow=wf, force=True)).output == ["resumed"]  # the run had completed


async def test_s3_missing_checkpoint_names_bucket_and_key(s3_env: S3Service, s3_bucket: str) -> None:
    location = f"s3://{s3_bucket}/runs/none/1.ckpt"
    with pytest.raises(CheckpointError, match="not found") as refused:
        await resume(location)
    assert location in str(refused.value)


async def test_s3_store_object_with_options_is_used_to_resume(
    s3_service: S3Service, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the endpoint and credentials given only as store options (SPEC: "endpoint
    from AWS_ENDPOINT_URL or store options"), `resume(..., checkpoint_store=store)`
    must read the checkpoint with that store's settings."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no credential hunt on IMDS
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    locations: list[str] = []
    wf = etl(Counter(), {}, locations)
    async with S3CheckpointStore(s3_bucket, "opts", **s3_service.options()) as store:
        await crashed_run(wf, run_id="run-opts", checkpoint_store=store, initial_channel={"seed": 14})
        assert locations == [f"s3://{s3_bucket}/opts/run-opts/1.ckpt"]
        result = await resume(locations[0], workflow=wf, checkpoint_store=store)
    assert result.output == "loaded 60 from 3 rows (seed 14)"


async def test_s3_unreachable_endpoint_is_a_checkpoint_error(
    s3_env: S3Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(CheckpointError, match="some-bucket") as refused:
        await resume("s3://some-bucket/a/1.ckpt")
    assert refused.value.__cause__ is not None  # the botocore error, kept as the cause
