"""A started server hands the GIL round every millisecond, not CPython's 5 (issue 20).

The event loop shares the GIL with the mailbox pool's threads; at 5 ms each step of every
session waited behind a pool thread's parsing (the bench's IMAP session p99 rose with the
number of cold folders being read).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from esam_mail import app

pytestmark = pytest.mark.protocol


def test_the_server_sets_a_short_gil_switch_interval(make_running: Any) -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        make_running()
        assert app.GIL_SWITCH_INTERVAL <= 0.001
        assert sys.getswitchinterval() == pytest.approx(app.GIL_SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(before)
