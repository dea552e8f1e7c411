"""The fuzzing budget: ``max_examples`` per property from ``ESAM_FUZZ_EXAMPLES``.

CI runs the default (200 examples per property, the whole fuzz suite in well
under a minute); a longer run is ``ESAM_FUZZ_EXAMPLES=20000 .venv/bin/python -m
pytest tests/slow/fuzz tests/protocol/test_fuzz_wire.py`` (docs/security.md).
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("ESAM_FUZZ_EXAMPLES", "200"))


def fuzz(deadline_ms: int = 500, examples: int | None = None) -> settings:
    """Hypothesis settings with the budget and a per-example deadline (a hang fails)."""
    return settings(
        max_examples=examples if examples is not None else EXAMPLES,
        deadline=timedelta(milliseconds=deadline_ms),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
        derandomize=False,
    )
