"""The slow tier: tests that take many seconds by nature (20 processes racing for one login,
several processes on one Maildir, the hypothesis fuzzing of the parsers, a real argon2
measurement, the mypy run).

They run in CI with everything else (``bash scripts/test.sh``); ``pytest tests/unit`` (the
fast tier) leaves them out.  Every item here carries the ``slow`` marker (tests/conftest.py).
"""

from __future__ import annotations

from tests.unit.registration.conftest import db_url  # noqa: F401  (the sqlite/postgres fixture)
