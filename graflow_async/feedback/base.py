"""The feedback store: one backend doing the three jobs of the web app's store.

A `FeedbackStore` keeps feedback requests and answers (`FeedbackRequests`), the
suspensions of runs waiting for them (`Suspensions`), and the web app's run records
(`RunRecords`), in one place so that they outlive a process. Implementations:
`MemoryFeedbackStore` (one process), `FileFeedbackStore` (a directory; the default,
under ``.graflow/feedback``, run records under ``.graflow/runs``) and
`RedisFeedbackStore` (shared by every process on the server). Code that needs one job
is typed against its contract: a run's `FeedbackHost` against `HitlStore`, the web
app's run manager keeps run records through `RunRecords`.
"""

from __future__ import annotations

from graflow_async.feedback.contracts import FeedbackRequests, HitlStore, Suspensions
from graflow_async.records.contract import RunRecords


class FeedbackStore(HitlStore, RunRecords):
    """Feedback requests, suspensions and run records in one backend (see the contracts
    for what each method raises)."""


__all__ = ["FeedbackRequests", "FeedbackStore", "HitlStore", "RunRecords", "Suspensions"]
