"""The task side: what runs a task's attempts, in-process or on a worker.

    executor.py       an actor over a task queue; each attempt a child under its Supervisor
    task_queue.py     the executor's mailbox: handed over in-process, read on a worker
    local_attempts.py starting in-process attempts as their messages are taken
    attempt.py        one attempt: arguments, handler, timeout, the reply
    context.py        TaskContext, whose operations go to the run as messages
    context_port.py   where those messages leave and their answers come back
    handlers.py       the handler registry and the direct and inline handlers
    threads.py        the run's thread pool, where plain functions run
    worker.py         a worker process: an executor on the Redis task stream
    metrics.py        Prometheus figures of a worker and of the web app's runs
    tracing.py        OpenTelemetry spans of runs and attempts

Nothing here imports the run (`graflow_async.run`), the web app or the CLI.
"""
