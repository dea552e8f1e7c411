"""The fuzzing budget: ``max_examples`` per property from ``ESAM_FUZZ_EXAMPLES``.

CI runs the default (200 examples per property, the whole fuzz suite in well
under a minute); a longer run is ``ESAM_FUZZ_EXAMPLES=20000 .venv/bin/python -m
pytest tests/slow/fuzz tests/protocol/test_fuzz_wire.py`` (docs/security.md).

The per-example budget is CPU time of the test's own thread, not Hypothesis's wall-clock
deadline: under a loaded CI machine (4 xdist workers on 2 cores) a 750 ms example took
3,249 ms of wall time and failed a 2,000 ms deadline, while a quadratic blow-up (the
100 s base-subject loop) is still caught by CPU time, and a true hang by pytest-timeout.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("ESAM_FUZZ_EXAMPLES", "200"))


def fuzz(deadline_ms: int = 500, examples: int | None = None) -> Callable[[Any], Any]:
    """Hypothesis settings with the budget and a per-example CPU-time limit (a hang fails)."""
    applied = settings(
        max_examples=examples if examples is not None else EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
        derandomize=False,
    )

    def apply(test: Any) -> Any:
        test = applied(test)
        inner = test.hypothesis.inner_test

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> None:
            start = time.thread_time()
            inner(*args, **kwargs)
            used = (time.thread_time() - start) * 1000
            assert used <= deadline_ms, f"one example took {used:.0f} ms of CPU (budget {deadline_ms} ms)"

        test.hypothesis.inner_test = timed
        return test

    return apply
