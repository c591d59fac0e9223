"""A chaos soak of a whole dback deployment: several ``dback serve`` processes on a
PostgreSQL database of their own through a private Redis, a few hundred viewers, a writer at
known rates, faults at random times, and a checker that says what every viewer missed.

``python -m tests.support.soak`` (``make soak``) runs the long form; ``tests/test_soak.py``
runs a short one inside ``make test``. docs/soak.md describes both and what the table means.
"""
