"""The actor kernel: mailboxes, actors and supervisors. It knows nothing of workflows.

- `open_mailbox` makes a bounded mailbox with a send end and a receive end.
- `Actor` is state plus a loop over its mailbox (an `Inbox`: a mailbox's receive end
  or a transport queue), or, for an actor that never awaits, a handler its mailbox
  hands messages to as they are sent (`HandOver`).
- `Supervisor` owns child tasks and actors under structured concurrency: nothing it
  starts outlives its ``async with`` block, and cancelling it cancels them all.
"""

from graflow_async.actors.actor import Actor, HandOver, Inbox
from graflow_async.actors.mailbox import MailboxClosed, MailboxFull, MailboxReceiver, MailboxSender, open_mailbox
from graflow_async.actors.supervisor import Supervisor

__all__ = [
    "Actor",
    "HandOver",
    "Inbox",
    "MailboxClosed",
    "MailboxFull",
    "MailboxReceiver",
    "MailboxSender",
    "Supervisor",
    "open_mailbox",
]
