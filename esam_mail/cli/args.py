"""Numeric command-line values checked at the parser, so a bad one is refused before anything
runs, with argparse's ``error: argument --quota-mb: ...`` line naming the option (exit 2).

Every numeric option of ``esam`` uses one of these instead of a bare ``type=int``/``float``
(``tests/unit/test_cli_args.py`` fails on a bare one).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from esam_mail.cli._i18n import _


def whole(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(_("must be a whole number, got {text!r}", text=text)) from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(_range(lo, hi, value))
        return value

    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


def number(lo: float, hi: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite number ``>= lo`` (``> lo`` with ``above``) and ``<= hi``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(_("must be a number, got {text!r}", text=text)) from None
        low_ok = value > lo if above else value >= lo
        if not math.isfinite(value) or not low_ok or (hi is not None and value > hi):
            if not above:
                raise argparse.ArgumentTypeError(_range(f"{lo:g}", None if hi is None else f"{hi:g}", text))
            if hi is None:
                raise argparse.ArgumentTypeError(_("must be more than {lo}, got {value}", lo=f"{lo:g}", value=text))
            raise argparse.ArgumentTypeError(
                _("must be more than {lo} and at most {hi}, got {value}", lo=f"{lo:g}", hi=f"{hi:g}", value=text))
        return value

    parse.__name__ = "number"
    return parse


def _range(lo: object, hi: object | None, value: object) -> str:
    if hi is None:
        return _("must be {lo} or more, got {value}", lo=lo, value=value)
    return _("must be between {lo} and {hi}, got {value}", lo=lo, hi=hi, value=value)
