"""What users write: tasks, the workflow DSL and its compilation, group and retry policies.

    tasks.py          @task and Task: a function with its id, options and bound arguments
    graph.py          workflow blocks, >> and |, chains and parallel groups
    compose.py        what >> and | are made of (Composable)
    compile.py        a workflow as a CompiledGraph of int-indexed nodes (graph_order.py: Kahn's walk)
    policies.py       RetryPolicy, group execution policies, CoordinationBackend
    schedules.py      Schedule: a workflow on a cron expression or every N seconds, checked
    ticks.py          a schedule's ticks and which to start now (pure: schedule, last tick, now)
    docker_options.py the docker handler's options, checked where a task declares them
    collector.py      the garbage collector's thresholds while a workflow block is open

Nothing here imports the run, the task side, transports or stores.
"""
