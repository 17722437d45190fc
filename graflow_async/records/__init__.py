"""Run records: what `GET /api/runs` and the runs UI show of each run (status, workflow,
times, tasks, pending questions), kept in the same backend as the feedback store.

    base.py         a record's checks, listings' order and cursors
    contract.py     RunRecords: the contract (and what every store shares: ``async with``)
    corrupt.py      what a store does with a record it cannot read (Listing.skipped, Reports)
    memory.py       in this process's memory
    file.py         one JSON file per run under ``.graflow/runs``
    redis.py        one key per run on the feedback store's Redis server
    redis_read.py   reading store keys from Redis without trusting them
    conformance.py  RunRecordsSuite: the tests every implementation passes
"""
