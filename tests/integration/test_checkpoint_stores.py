"""Checkpoint stores: one conformance suite over the file and S3 stores, then specifics."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from services import S3Service, iam_enforced

from graflow_async import files as file_module  # the atomic writes every file store goes through
from graflow_async.checkpoints import (
    CheckpointStore,
    FileCheckpointStore,
    S3CheckpointStore,
    decode_checkpoint,
    encode_checkpoint,
    open_store,
    store_for_location,
)
from graflow_async.checkpoints.format import SIGNING_KEY_ENV
from graflow_async.exceptions import CheckpointError

StoreFactory = Callable[..., CheckpointStore]


@pytest.fixture(params=["file", "s3"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds stores (with extra options) sharing one root: a directory or a bucket prefix."""
    if request.param == "file":
        return lambda **options: FileCheckpointStore(tmp_path / "checkpoints", **options)
    service: S3Service = request.getfixturevalue("s3_service")
    bucket: str = request.getfixturevalue("s3_bucket")
    return lambda **options: S3CheckpointStore(bucket, "root/prefix", **service.options(), **options)


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[CheckpointStore]:
    async with new_store() as opened:
        yield opened


# -- conformance suite: every store -------------------------------------------------------


def test_location_is_the_name_under_the_root(store: CheckpointStore) -> None:
    location = store.location("run1/1.ckpt")
    assert location.replace(os.sep, "/").endswith("/run1/1.ckpt")
    assert store.location("run1/2.ckpt") == location[: -len("1.ckpt")] + "2.ckpt"
    assert store.location("./run1//1.ckpt") == location


@pytest.mark.parametrize("name", ["", ".", "/abs/1.ckpt", "../up.ckpt", "run1/../../x"])
def test_invalid_names_are_refused(store: CheckpointStore, name: str) -> None:
    with pytest.raises(CheckpointError, match="invalid checkpoint name"):
        store.location(name)


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 3], ids=["empty", "one", "5MiB"])
async def test_write_then_read(store: CheckpointStore, size: int) -> None:
    data = os.urandom(size)
    location = store.location("run1/1.ckpt")
    assert await store.write(location, data) == location
    assert await store.read(location) == data


async def test_relative_locations_are_names_under_the_root(store: CheckpointStore) -> None:
    assert await store.write("run1/1.ckpt", b"abc") == store.location("run1/1.ckpt")
    assert await store.read(store.location("run1/1.ckpt")) == b"abc"
    assert await store.read("run1/1.ckpt") == b"abc"


async def test_overwrite_replaces_the_content(store: CheckpointStore) -> None:
    location = store.location("run1/1.ckpt")
    await store.write(location, b"first version, longer")
    await store.write(location, b"second")
    assert await store.read(location) == b"second"
    assert await store.list() == [location]


async def test_list_is_sorted_and_filtered_by_prefix(store: CheckpointStore) -> None:
    names = ["run2/1.ckpt", "run1/2.ckpt", "run10/1.ckpt", "run1/1.ckpt", "run1/sub/3.ckpt"]
    for name in names:
        await store.write(store.location(name), name.encode())
    every = await store.list()
    assert every == sorted(store.location(name) for name in names)
    assert await store.list("run1/") == [store.location(n) for n in ["run1/1.ckpt", "run1/2.ckpt", "run1/sub/3.ckpt"]]
    assert await store.list("run1") == sorted(store.location(n) for n in names if n.startswith("run1"))
    assert await store.list("run1/1") == [store.location("run1/1.ckpt")]
    assert await store.list("missing/") == []
    for location in every:  # listed locations are readable as they are
        assert (await store.read(location)).decode() in names


async def test_list_of_an_empty_store(store: CheckpointStore) -> None:
    assert await store.list() == []


async def test_delete(store: CheckpointStore) -> None:
    kept, deleted = store.location("run1/1.ckpt"), store.location("run1/2.ckpt")
    await store.write(kept, b"1")
    await store.write(deleted, b"2")
    await store.delete(deleted)
    assert await store.list() == [kept]
    with pytest.raises(CheckpointError, match="not found"):
        await store.read(deleted)
    await store.delete(deleted)  # deleting what is gone is not an error
    assert await store.read(kept) == b"1"


async def test_reading_a_missing_location_names_it(store: CheckpointStore) -> None:
    location = store.location("run1/missing.ckpt")
    with pytest.raises(CheckpointError) as info:
        await store.read(location)
    assert "not found" in str(info.value)
    assert location in str(info.value)


async def test_another_store_on_the_same_root_sees_the_data(store: CheckpointStore, new_store: StoreFactory) -> None:
    location = await store.write(store.location("run1/1.ckpt"), b"persisted")
    async with new_store() as other:
        assert other.location("run1/1.ckpt") == location
        assert await other.read(location) == b"persisted"
        assert await other.list() == [location]


async def test_concurrent_writes_are_atomic(store: CheckpointStore) -> None:
    location = store.location("run1/1.ckpt")
    payloads = [bytes([i]) * 200_000 for i in range(12)]
    await store.write(location, payloads[0])

    async def read() -> bytes:
        return await store.read(location)

    writes = [store.write(location, payload) for payload in payloads]
    reads = [read() for _ in range(12)]
    results = await asyncio.gather(*writes, *reads)
    for seen in results[len(writes) :]:
        assert seen in payloads  # never a mix of two writes, never a partial file
    assert await store.read(location) in payloads
    assert await store.list() == [location]


async def test_create_is_exclusive(store: CheckpointStore) -> None:
    location = store.location("run1/lease")
    payloads = [bytes([i]) * 50_000 for i in range(8)]
    created = await asyncio.gather(*(store.create(location, p) for p in payloads))
    assert created.count(True) == 1  # exactly one creator wins
    assert await store.read(location) == payloads[created.index(True)]
    assert await store.create(location, b"later") is False
    await store.delete(location)
    assert await store.create(location, b"again") is True and await store.read(location) == b"again"
    assert await store.list() == [location]  # no temporary files left behind


async def test_closed_store_refuses_every_operation(new_store: StoreFactory) -> None:
    opened = new_store()
    location = await opened.write(opened.location("run1/1.ckpt"), b"x")
    await opened.aclose()
    await opened.aclose()  # idempotent
    operations = [
        opened.read(location),
        opened.write(location, b"y"),
        opened.create(location + "2", b"y"),
        opened.list(),
        opened.delete(location),
    ]
    for operation in operations:
        with pytest.raises(CheckpointError, match="is closed"):
            await operation


async def test_context_manager_closes(new_store: StoreFactory) -> None:
    async with new_store() as opened:
        await opened.write(opened.location("a.ckpt"), b"x")
    with pytest.raises(CheckpointError, match="is closed"):
        await opened.list()


def test_signing_key_option_and_env(new_store: StoreFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    assert new_store().signing_key is None
    assert new_store(signing_key="clé").signing_key == "clé".encode()
    assert new_store(signing_key=b"raw").signing_key == b"raw"
    monkeypatch.setenv(SIGNING_KEY_ENV, "from env")
    assert new_store().signing_key == b"from env"
    assert new_store(signing_key=b"option wins").signing_key == b"option wins"


async def test_signed_checkpoint_through_the_store(new_store: StoreFactory) -> None:
    doc = {"run_id": "r1", "results": {"train": (1, 2)}, "channel": {"k": {1, 2}}}
    async with new_store(signing_key=b"k1") as signer:
        location = await signer.write(signer.location("r1/1.ckpt"), encode_checkpoint(doc, key=signer.signing_key))
        data = await signer.read(location)
    assert decode_checkpoint(data, key=signer.signing_key) == doc
    with pytest.raises(CheckpointError, match="signature does not verify"):
        decode_checkpoint(data, key=b"k2", source=location)


# -- file store -----------------------------------------------------------------------------


def on_disk(location: str) -> tuple[bytes, int]:
    """A file's bytes and permission bits."""
    path = Path(location)
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "1.ckpt")


def fail_on_replace(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst) == target:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def fail_half_way(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    def write_half_then_die(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(file_module, "_write_all", write_half_then_die)


def fail_on_fsync(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("crash", [fail_on_replace, fail_half_way, fail_on_fsync])
async def test_crash_during_write_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: Callable[..., None]
) -> None:
    store = FileCheckpointStore(tmp_path)
    location = store.location("1.ckpt")
    await store.write(location, b"good checkpoint")
    crash(monkeypatch, Path(location))
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*1\.ckpt.*error|space"):
        await store.write(location, b"new checkpoint that never lands" * 1000)
    monkeypatch.undo()
    assert on_disk(location) == (b"good checkpoint", 0o600)
    assert leftovers(tmp_path) == []
    assert await store.list() == [location]


async def test_stray_temp_files_are_not_listed(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    location = await store.write(store.location("run1/1.ckpt"), b"x")
    (tmp_path / "run1" / ".2.ckpt.k3j4h5.graflow-tmp").write_bytes(b"half")
    assert await store.list() == [location]


async def test_file_locations_are_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = FileCheckpointStore("relative/dir")
    location = store.location("run1/1.ckpt")
    assert location == str(tmp_path / "relative" / "dir" / "run1" / "1.ckpt")
    await store.write(location, b"x")
    assert on_disk(location) == (b"x", 0o600)


async def test_reading_a_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "run1").mkdir()
    store = FileCheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        await store.read(store.location("run1"))


async def test_writing_under_a_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"")
    store = FileCheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        await store.write(store.location("blocker/1.ckpt"), b"x")


def test_open_store_defaults_to_a_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store()
    assert isinstance(store, FileCheckpointStore)
    assert store.root == tmp_path / ".graflow" / "checkpoints"
    for spec in (str(tmp_path / "d"), tmp_path / "d"):
        built = open_store(spec, signing_key=b"k")
        assert isinstance(built, FileCheckpointStore)
        assert built.root == tmp_path / "d"
        assert built.signing_key == b"k"


def test_open_store_returns_a_store_as_is(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path)
    assert open_store(store) is store
    with pytest.raises(TypeError, match="signing_key"):
        open_store(store, signing_key=b"k")


async def test_store_for_a_local_location(tmp_path: Path) -> None:
    location = str(tmp_path / "elsewhere" / "my.ckpt")
    async with store_for_location(location) as store:
        assert isinstance(store, FileCheckpointStore)
        assert store.root == tmp_path / "elsewhere"
        assert await store.write(location, b"x") == location
        assert await store.read(location) == b"x"


# -- S3 store ---------------------------------------------------------------------------------


async def test_missing_bucket_names_the_bucket(s3_service: S3Service) -> None:
    from botocore.exceptions import ClientError

    async with S3CheckpointStore("no-such-bucket-here", "p", **s3_service.options()) as store:
        location = store.location("1.ckpt")
        operations = [store.write(location, b"x"), store.read(location), store.list()]
        for operation in operations:
            with pytest.raises(CheckpointError) as info:
                await operation
            assert "bucket 'no-such-bucket-here' does not exist" in str(info.value)
            assert isinstance(info.value.__cause__, ClientError)


async def test_access_denied_names_bucket_and_key(s3_service: S3Service, s3_bucket: str) -> None:
    async with iam_enforced(s3_service) as credentials:
        async with S3CheckpointStore(s3_bucket, "p", **credentials) as store:
            location = store.location("1.ckpt")
            for operation in (store.write(location, b"x"), store.read(location)):
                with pytest.raises(CheckpointError) as info:
                    await operation
                assert "access denied" in str(info.value)
                assert f"'s3://{s3_bucket}/p/1.ckpt'" in str(info.value)


async def test_unreachable_endpoint(s3_service: S3Service, unused_tcp_port: int) -> None:
    from botocore.exceptions import BotoCoreError

    options = {**s3_service.options(), "endpoint_url": f"http://127.0.0.1:{unused_tcp_port}"}
    async with S3CheckpointStore("bucket", "p", max_attempts=1, **options) as store:
        with pytest.raises(CheckpointError) as info:
            await store.write(store.location("1.ckpt"), b"x")
    assert "cannot write 's3://bucket/p/1.ckpt'" in str(info.value)
    assert isinstance(info.value.__cause__, BotoCoreError)


async def test_invalid_endpoint(s3_service: S3Service) -> None:
    options = {**s3_service.options(), "endpoint_url": "not a url"}
    async with S3CheckpointStore("bucket", **options) as store:
        with pytest.raises(CheckpointError, match="cannot connect to S3 bucket 'bucket'"):
            await store.list()


async def test_location_in_another_bucket_is_refused(s3_service: S3Service) -> None:
    async with S3CheckpointStore("mine", **s3_service.options()) as store:
        with pytest.raises(CheckpointError, match="this store serves 'mine'"):
            await store.read("s3://theirs/1.ckpt")
        with pytest.raises(CheckpointError, match="names no object key"):
            await store.read("s3://mine/")


async def test_endpoint_from_environment(
    s3_service: S3Service, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_service.endpoint_url)
    options = s3_service.options()
    del options["endpoint_url"]
    async with open_store(f"s3://{s3_bucket}/runs/", **options) as store:
        assert isinstance(store, S3CheckpointStore)
        assert store.endpoint_url == s3_service.endpoint_url
        location = await store.write(store.location("r1/1.ckpt"), b"x")
        assert location == f"s3://{s3_bucket}/runs/r1/1.ckpt"
        assert await store.read(location) == b"x"


async def test_store_for_an_s3_location(s3_service: S3Service, s3_bucket: str) -> None:
    location = f"s3://{s3_bucket}/some/where/my.ckpt"
    async with store_for_location(location, **s3_service.options()) as store:
        assert isinstance(store, S3CheckpointStore)
        assert store.prefix == "some/where/"
        assert await store.write(location, b"x") == location
        assert await store.read(location) == b"x"
        assert await store.list() == [location]
    with pytest.raises(CheckpointError, match="names no object key"):
        store_for_location(f"s3://{s3_bucket}/dir/")


def test_a_file_replaced_without_fsync_is_exchanged_whole(tmp_path: Path) -> None:
    """`files.replace(sync=False)` over an existing file (an exchange, then the old file
    unlinked): the new bytes, owner-only, nothing left beside; a directory in the way is an
    error and stays as it was."""
    target = tmp_path / "1.ckpt"
    file_module.replace(target, b"old", sync=False)
    assert on_disk(str(target)) == (b"old", 0o600)
    for i in range(3):
        file_module.replace(target, b"new %d" % i, sync=False)
        assert on_disk(str(target)) == (b"new %d" % i, 0o600)
    assert leftovers(tmp_path) == []
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        file_module.replace(tmp_path / "blocker", b"x", sync=False)
    assert (tmp_path / "blocker" / "inside").read_bytes() == b"kept"
    assert leftovers(tmp_path) == ["blocker"]


def test_where_files_cannot_be_exchanged_a_rename_replaces_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctypes
    import errno

    tries = []

    def refuse(a: bytes, b: bytes) -> int:
        tries.append(a)
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(file_module, "_exchange", refuse)
    target = tmp_path / "1.ckpt"
    file_module.replace(target, b"old", sync=False)
    file_module.replace(target, b"new", sync=False)
    file_module.replace(target, b"newer", sync=False)
    assert on_disk(str(target)) == (b"newer", 0o600) and leftovers(tmp_path) == []
    assert len(tries) == 1  # refused once: not tried again
