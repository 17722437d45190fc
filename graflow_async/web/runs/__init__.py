"""Runs in the web app: starting, watching and cancelling them (SPEC section 8).

manager.py    the runs an app drives (started, resumed, cancelled), their records
state.py      a run's record kept up to date from its events
api.py        /api/runs: start, list, get, cancel, and server-sent events
ui.py         /ui/runs: the list and each run's page
views.py      what the API and the UI show of a record
page.py       a run's page: its graph drawn, or summarized when large
graphview.py  the layout of a compiled graph, in linear time
"""
