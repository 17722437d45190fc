"""Feedback in the web app (SPEC section 5): /api/feedback (api.py) and /ui/feedback (ui.py)."""
