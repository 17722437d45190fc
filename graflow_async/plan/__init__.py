"""The run plan: every rule of a run as a pure state machine (facts in, actions out).

- `graph.RunGraph`: the compiled workflow plus the tasks added at runtime.
- `core.RunPlan`: takes facts (a task finished, failed, asked for more tasks, a retry
  came due) and hands back actions (`actions.Dispatch`, `RetryLater`, `Emit`, and
  `Finish`, `Fail` or `Suspend` at the end). No awaits, no I/O, no logging.
- `channel.ChannelData`: the run's channel, applied one message at a time.
- `directives`: what a task asks of the graph, taken with its result.
- `specs`: added tasks described by import path, for workers and checkpoints.
- `snapshot.to_doc` / `from_doc`: the plan as a checkpoint document and back;
  `from_doc` checks every field first (`doc_fields`, `state_fields`) and refuses a
  malformed document with `CheckpointError` naming the field. With `keep_running`, the
  document is a journal snapshot: it keeps the work under way as it is (`live`), and
  the errors the plan holds (`error_docs`).

The run actor (`graflow_async.run.actor`) carries the actions out. Nothing here imports
the run, the task side, transports or stores.
"""

from graflow_async.plan.actions import Dispatch, Emit, Fail, Finish, RetryLater, Suspend
from graflow_async.plan.channel import ChannelData
from graflow_async.plan.core import RunPlan, resolve
from graflow_async.plan.graph import RunGraph

__all__ = [
    "ChannelData",
    "Dispatch",
    "Emit",
    "Fail",
    "Finish",
    "RetryLater",
    "RunGraph",
    "RunPlan",
    "Suspend",
    "resolve",
]
