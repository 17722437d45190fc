"""A durable run's journal (SPEC 10): the `Journal` seam, its record format and its two
implementations (`FileJournal`; `RedisJournal`, imported from
``graflow_async.run.journal.redis`` so that a local run never loads redis)."""

from graflow_async.run.journal.base import Fenced, Journal, Replay
from graflow_async.run.journal.file import FileJournal
from graflow_async.run.journal.frames import JournalCorrupt, JournalError

__all__ = ["Fenced", "FileJournal", "Journal", "JournalCorrupt", "JournalError", "Replay"]
