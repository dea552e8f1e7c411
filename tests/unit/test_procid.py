"""procid: the process id without a system call per use, right in a forked child."""

from __future__ import annotations

import os

from esam_mail import procid


def test_pid_is_this_process_and_a_forked_child_gets_its_own() -> None:
    assert procid.pid() == os.getpid()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports and leaves at once
        os.close(r)
        os.write(w, b"%d %d" % (procid.pid(), os.getpid()))
        os._exit(0)
    os.close(w)
    try:
        seen, real = (int(x) for x in os.read(r, 64).split())
    finally:
        os.close(r)
        os.waitpid(child, 0)
    assert seen == real == child != procid.pid()
