"""The run plan: every rule of a run as a pure state machine (facts in, actions out).

- `graph.RunGraph`: the compiled workflow plus the tasks added at runtime.
- `core.RunPlan`: takes facts (a task finished, failed, asked for more tasks, a retry
  came due) and hands back actions (`actions.Dispatch`, `RetryLater`, `Emit`, and
  `Finish`, `Fail` or `Suspend` at the end). No awaits, no I/O, no logging.
- `channel.ChannelData`: the run's channel, applied one message at a time.
- `specs`: added tasks described by import path, for workers and checkpoints.

The run supervisor (`graflow_async.supervisor`) carries the actions out.
"""

from graflow_async.plan.actions import Dispatch, Emit, Fail, Finish, RetryLater, Suspend
from graflow_async.plan.channel import ChannelData
from graflow_async.plan.core import RunPlan, resolve
from graflow_async.plan.graph import RunGraph

__all__ = ["ChannelData", "Dispatch", "Emit", "Fail", "Finish", "RetryLater", "RunGraph", "RunPlan", "Suspend",
           "resolve"]
