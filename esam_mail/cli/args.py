"""Numeric command-line values checked at the parser, so a bad one is refused before anything
runs, with argparse's ``error: argument --quota-mb: ...`` line naming the option (exit 2).

Every numeric option of ``esam`` uses one of these instead of a bare ``type=int``/``float``
(``tests/unit/test_cli_args.py`` fails on a bare one).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {_range(lo, hi)}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


def number(lo: float, hi: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite number ``>= lo`` (``> lo`` with ``above``) and ``<= hi``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        low_ok = value > lo if above else value >= lo
        if not math.isfinite(value) or not low_ok or (hi is not None and value > hi):
            bound = f"more than {lo:g}" if above else _range(lo, None)
            if hi is not None:
                bound += f" and at most {hi:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _range(lo: float, hi: float | None) -> str:
    if hi is None:
        return f"{lo:g} or more"
    return f"between {lo:g} and {hi:g}" if isinstance(lo, float) else f"between {lo} and {hi}"
