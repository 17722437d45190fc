"""The checkpoint file format: round trips, and a clear CheckpointError for every bad file."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import random
import zlib
from typing import Any

import pytest

from graflow_async.checkpoints.format import (
    FORMAT_VERSION,
    MAGIC,
    SIGNING_KEY_ENV,
    decode_checkpoint,
    encode_checkpoint,
    signing_key_from_env,
)
from graflow_async.exceptions import CheckpointError

HEADER_SIZE = 20  # magic, version, flags, payload length
CHECKSUM_SIZE = 4
SIGNED_FLAG_BIT = 11 * 8  # bit 0 of the flags' low byte
KEY = b"secret key"


def make_doc() -> dict[str, Any]:
    return {
        "format": "graflow-async/checkpoint",
        "run_id": "run-1",
        "graph_hash": "abc123",
        "workflow": "pipelines:release",
        "completed": ["load", "train"],
        "results": {"load": [1, 2, 3], "train": (0.93, {"epochs": 3}), 7: None},
        "channel": {"model": b"\x00weights", ("k", 1): {1, 2}},
        "metadata": {"saved_at": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)},
    }


def decode_error(data: bytes, **kwargs: Any) -> CheckpointError:
    """The CheckpointError decoding `data` raises; fails the test on any other outcome."""
    with pytest.raises(CheckpointError) as info:
        decode_checkpoint(data, **kwargs)
    assert isinstance(info.value, CheckpointError)
    return info.value


def test_round_trip() -> None:
    doc = make_doc()
    data = encode_checkpoint(doc)
    assert data.startswith(MAGIC)
    assert decode_checkpoint(data) == doc


def test_signed_round_trip() -> None:
    doc = make_doc()
    data = encode_checkpoint(doc, key=KEY)
    assert decode_checkpoint(data, key=KEY) == doc
    assert len(data) == len(encode_checkpoint(doc)) + 32


def test_header_layout() -> None:
    data = encode_checkpoint({"a": 1})
    assert data[:8] == MAGIC
    assert int.from_bytes(data[8:10], "big") == FORMAT_VERSION
    assert int.from_bytes(data[10:12], "big") == 0
    assert int.from_bytes(data[12:20], "big") == len(data) - HEADER_SIZE - CHECKSUM_SIZE
    assert int.from_bytes(encode_checkpoint({"a": 1}, key=KEY)[10:12], "big") == 1


def test_source_is_named_in_errors() -> None:
    error = decode_error(b"", source="/ckpt/run1/1.ckpt")
    assert "'/ckpt/run1/1.ckpt'" in str(error)


def test_empty_data() -> None:
    assert "empty" in str(decode_error(b""))


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_truncated_at_any_offset(signed: bool) -> None:
    key = KEY if signed else None
    data = encode_checkpoint(make_doc(), key=key)
    offsets = [1, 5, 8, 12, 19, 20, 51, 52, 60, len(data) // 2, len(data) - 1]
    for cut in offsets:
        error = decode_error(data[:cut], key=key)
        assert "truncated" in str(error), (cut, str(error))


def test_extra_bytes_are_reported() -> None:
    error = decode_error(encode_checkpoint({"a": 1}) + b"\x00")
    assert "corrupted" in str(error)
    assert "1 unexpected bytes" in str(error)


def flip(data: bytes, bit: int) -> bytes:
    mutable = bytearray(data)
    mutable[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutable)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_any_flipped_header_bit_is_detected(signed: bool) -> None:
    key = KEY if signed else None
    data = encode_checkpoint(make_doc(), key=key)
    header_end = HEADER_SIZE + CHECKSUM_SIZE + (32 if signed else 0)
    for bit in range(header_end * 8):
        message = str(decode_error(flip(data, bit), key=key))
        byte = bit // 8
        if byte < 8:
            expected = "not a graflow-async checkpoint"
        elif byte < 10:
            expected = "unsupported format version"
        elif (byte < 12 and bit != SIGNED_FLAG_BIT) or byte >= HEADER_SIZE:
            expected = "corrupted: checksum mismatch"
        else:  # the signed flag or the length: the data no longer has the announced size
            grew = flip(data, bit)[byte] > data[byte]
            expected = "truncated (or its header is damaged)" if grew else "corrupted: "
        assert expected in message, (bit, message)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_flipped_payload_bit_is_detected(signed: bool) -> None:
    key = KEY if signed else None
    data = encode_checkpoint(make_doc(), key=key)
    start = HEADER_SIZE + CHECKSUM_SIZE + (32 if signed else 0)
    for bit in random.Random(1).sample(range(start * 8, len(data) * 8), 64):
        message = str(decode_error(flip(data, bit), key=key))
        assert "corrupted: checksum mismatch" in message, (bit, message)


def test_pickle_file() -> None:
    message = str(decode_error(pickle.dumps(make_doc())))
    assert "not a graflow-async checkpoint" in message
    assert "pickle" in message


def test_json_file() -> None:
    message = str(decode_error(b'{"results": {}}'))
    assert "not a graflow-async checkpoint" in message
    assert "JSON" in message


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes(seed: int) -> None:
    data = random.Random(seed).randbytes(random.Random(seed).randint(1, 500))
    assert "not a graflow-async checkpoint" in str(decode_error(data))


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_after_the_magic(seed: int) -> None:
    rng = random.Random(seed)
    data = MAGIC + FORMAT_VERSION.to_bytes(2, "big") + rng.randbytes(rng.randint(0, 500))
    message = str(decode_error(data))
    assert "truncated" in message or "corrupted" in message


def test_newer_format_version() -> None:
    data = bytearray(encode_checkpoint({"a": 1}))
    data[8:10] = (FORMAT_VERSION + 1).to_bytes(2, "big")
    message = str(decode_error(bytes(data)))
    assert f"unsupported format version {FORMAT_VERSION + 1}" in message


def build(payload: bytes, *, flags: int = 0) -> bytes:
    """A file with a valid checksum around `payload`, made without encode_checkpoint."""
    header = MAGIC + FORMAT_VERSION.to_bytes(2, "big") + flags.to_bytes(2, "big")
    header += len(payload).to_bytes(8, "big")
    return header + zlib.crc32(header + payload).to_bytes(4, "big") + payload


def test_build_helper_matches_the_encoder() -> None:
    data = encode_checkpoint({"a": 1})
    assert build(data[HEADER_SIZE + CHECKSUM_SIZE :]) == data


def test_valid_checksum_over_garbage_payload() -> None:
    # Passes the checksum but is not msgpack: still CheckpointError, never a msgpack error.
    error = decode_error(build(b"\xc1\xc1"))
    assert "payload cannot be decoded" in str(error)
    assert type(error) is CheckpointError


def test_payload_that_is_not_a_document() -> None:
    assert "payload is a list" in str(decode_error(build(b"\x92\x01\x02")))


def test_unknown_flags() -> None:
    assert "unsupported flags 0x0002" in str(decode_error(build(b"\x80", flags=2)))


def test_signed_file_read_without_key() -> None:
    message = str(decode_error(encode_checkpoint(make_doc(), key=KEY)))
    assert "signed" in message
    assert SIGNING_KEY_ENV in message


def test_wrong_key() -> None:
    data = encode_checkpoint(make_doc(), key=KEY)
    assert "signature does not verify" in str(decode_error(data, key=b"other key"))


def test_unsigned_file_with_key_required() -> None:
    message = str(decode_error(encode_checkpoint(make_doc()), key=KEY))
    assert "not signed" in message


def test_tampered_signed_file_with_recomputed_checksum() -> None:
    data = encode_checkpoint({"results": {"a": 1}}, key=KEY)
    start = HEADER_SIZE + CHECKSUM_SIZE
    signature, payload = data[start : start + 32], data[start + 32 :]
    forged = payload.replace(b"\x01", b"\x02")
    checksum = zlib.crc32(data[:HEADER_SIZE] + signature + forged).to_bytes(4, "big")
    tampered = data[:HEADER_SIZE] + checksum + signature + forged
    assert "signature does not verify" in str(decode_error(tampered, key=KEY))


@pytest.mark.parametrize("key", [b"", "text"], ids=["empty", "str"])
def test_invalid_keys(key: Any) -> None:
    with pytest.raises(CheckpointError, match="non-empty bytes"):
        encode_checkpoint({}, key=key)


class Model:
    pass


def encode_error(doc: dict[str, Any]) -> str:
    with pytest.raises(CheckpointError) as info:
        encode_checkpoint(doc)
    assert isinstance(info.value.__cause__, TypeError | ValueError | OverflowError)
    return str(info.value)


def test_unserializable_result_names_the_task_and_type() -> None:
    doc = make_doc()
    doc["results"]["train"] = {"model": [Model()]}
    message = encode_error(doc)
    assert message.startswith("cannot serialize the result of task 'train': ")
    assert "Model is not supported" in message


def test_unserializable_channel_value_names_the_key_and_type() -> None:
    doc = make_doc()
    doc["channel"]["model"] = Model()
    message = encode_error(doc)
    assert message.startswith("cannot serialize channel key 'model': ")
    assert "Model is not supported" in message


def test_unserializable_other_field_names_the_field() -> None:
    doc = make_doc()
    doc["metadata"] = {"note": Model()}
    assert encode_error(doc).startswith("cannot serialize checkpoint field 'metadata': ")


def test_non_dict_document() -> None:
    with pytest.raises(CheckpointError, match="must be a dict"):
        encode_checkpoint([1, 2])  # type: ignore[arg-type]


def test_signing_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, "clé")
    assert signing_key_from_env() == "clé".encode()
    monkeypatch.setenv(SIGNING_KEY_ENV, "")
    assert signing_key_from_env() is None
    monkeypatch.delenv(SIGNING_KEY_ENV)
    assert signing_key_from_env() is None
    assert os.environ.get(SIGNING_KEY_ENV) is None
