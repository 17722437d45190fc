"""The command line: ``python -m graflow_async`` (or ``graflow-async``).

main.py    run, resume, worker, queue-stats: the commands and their exit codes
serve.py   serve: the web app (REST API and UI) for feedback and runs
"""
