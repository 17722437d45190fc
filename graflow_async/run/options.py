"""What a run is given: `RunOptions` (the keywords of `run`) and, for a resumed run,
`Resumed` (what it takes from its checkpoint besides the plan). Both are frozen records
checked on construction; `run` and `resume` build them, and they travel as they are to
the driver, the run actor and its services."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from graflow_async.define.limits import check_priority
from graflow_async.events import Event
from graflow_async.options import number, whole
from graflow_async.options import run_id as check_run_id
from graflow_async.transports.base import Transport
from graflow_async.wire.codec import check_value


def new_run_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The keywords of `run` (SPEC section 2), checked: ValueError naming a bad number or
    run id, TypeError for a channel value that cannot travel (naming its key) or an
    `on_event` that is not callable. Whole numbers given as floats (``2.0``) are kept as
    ints, and `initial_channel` as a read-only copy."""

    run_id: str = field(default_factory=new_run_id)
    transport: Transport | None = None
    checkpoint_store: Any = None
    feedback_store: Any = None
    default_max_retries: int = 0
    initial_channel: Mapping[str, Any] = field(default_factory=dict)
    on_event: Callable[[Event], Any] | None = None
    max_cycles: int = 100
    max_threads: int | None = None
    owner_lease: float = 10.0  # seconds the driver's hold on a run on Redis lasts unless renewed
    durable: bool | None = None  # None: True on Redis, False in-process (SPEC 10)
    retention: float = 7 * 86400  # seconds an ended durable run keeps its outcome
    epoch: int = 0  # a durable run's incarnation, taken with its journal before it is driven
    priority: int = 5  # its tasks' priority unless they set their own (SPEC 11)

    @property
    def is_durable(self) -> bool:
        if self.durable is None:
            return self.transport is not None and self.transport.keeps_journals
        return self.durable

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        fix = object.__setattr__  # frozen: the checked values replace the given ones here only
        fix(self, "default_max_retries", whole("default_max_retries", self.default_max_retries))
        fix(self, "max_cycles", whole("max_cycles", self.max_cycles, minimum=1))
        fix(self, "owner_lease", number("owner_lease", self.owner_lease, above=True))
        fix(self, "retention", number("retention", self.retention, above=True))
        fix(self, "epoch", whole("epoch", self.epoch))
        fix(self, "priority", check_priority("priority", self.priority))
        if self.durable is not None and not isinstance(self.durable, bool):
            raise TypeError(f"durable must be True, False or None, got {type(self.durable).__name__}")
        if self.max_threads is not None:
            fix(self, "max_threads", whole("max_threads", self.max_threads, minimum=1))
        if self.transport is not None and not isinstance(self.transport, Transport):
            raise TypeError(f"transport must be a Transport, got {type(self.transport).__name__}")
        if self.on_event is not None and not callable(self.on_event):
            raise TypeError(f"on_event must be callable, got {type(self.on_event).__name__}")
        channel = dict(self.initial_channel or {})
        for key, value in channel.items():
            check_value(key, value)
        fix(self, "initial_channel", MappingProxyType(channel))


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a run resumed from checkpoint number `sequence` takes from it besides the plan:
    the metadata the task that saved it sees (``context.resumed_metadata``), by task id."""

    sequence: int = 0
    metadata: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        whole("sequence", self.sequence)

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Resumed:
        """From a checkpoint document (already checked when it was loaded)."""
        task_id = doc.get("task_id")
        metadata = {} if task_id is None else {str(task_id): dict(doc.get("metadata") or {})}
        return cls(int(doc.get("sequence", 0)), MappingProxyType(metadata))
