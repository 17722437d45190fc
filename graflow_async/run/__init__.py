"""The driver: what runs a workflow from start to outcome.

runner.py         `run`, `run_sync` and `drive`: routes opened, the run actor
                  started under a span
options.py        RunOptions (the keywords of `run`, checked) and Resumed
resume.py         `resume`: a run continued from its checkpoint, safely
actor.py          RunActor: reads its mailbox (replies, context requests, its
                  children's reports), tells the plan the facts, carries out its actions
services.py       the answers to tasks' context requests (channel, checkpoints, feedback)
feedback_host.py  a task's question stored, waited for and answered
routes.py         where each task goes: the run's transport or a Redis group's
dispatch.py       the task messages of a dispatch, made as the executor takes them
checkpoints.py    CheckpointManager: a run's checkpoints written and read
emitter.py        a run's events logged and handed to `on_event`
frozen_heap.py    the collector kept off a large run's graph while it runs
"""
