"""Run records: what `GET /api/runs` and the runs UI show of each run (status, workflow,
times, tasks, pending questions), kept in the same backend as the feedback store.

    base.py    RunRecords: the contract, and the records kept in memory
    file.py    one JSON file per run under ``.graflow/runs``
    redis.py   one key per run on the feedback store's Redis server
"""
