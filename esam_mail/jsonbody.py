"""Bounded JSON parsing for request bodies (issue 14: no request may freeze the server).

``json.loads`` of client input has two ways to hurt a shared event loop: a
document nested thousands of levels deep (``RecursionError``, a 500 and a
traceback per request) and huge integer literals (Python's int conversion is
quadratic; 3.11 refuses 4,300+ digits with a ``ValueError``, another 500).
:func:`loads_bounded` answers both with :class:`JSONBoundError`, whose text is
safe to show the client, before any of that work happens.

A leaf module (stdlib only) so that any front-end can use it: the twisted.web
``Request.json`` and its Starlette port call it and turn the error into a 422.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "JSONBoundError", "loads_bounded"]

MAX_DEPTH = 32  # nested arrays/objects; application forms need 3
MAX_NUMBER_CHARS = 40  # digits (and sign, point, exponent) of one number literal


class JSONBoundError(ValueError):
    """The body is not acceptable JSON; ``str(exc)`` is a fixed, client-safe text."""


def _check_number(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise JSONBoundError(f"a number in the JSON body has more than {MAX_NUMBER_CHARS} characters")
    return text


def _int(text: str) -> int:
    return int(_check_number(text))


def _float(text: str) -> float:
    return float(_check_number(text))


def _constant(name: str) -> Any:
    raise JSONBoundError("NaN and Infinity are not allowed in JSON")


def _depth_ok(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > max_depth:
            return False
        children = obj.values() if isinstance(obj, dict) else obj
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return True


def loads_bounded(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON document from a client, within bounds.

    Args:
        data: the body (UTF-8 bytes or text).
        max_depth: most nested arrays/objects allowed.

    Raises:
        JSONBoundError: not UTF-8, not JSON, nested deeper than ``max_depth``, a
            number literal longer than ``MAX_NUMBER_CHARS``, NaN or Infinity.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JSONBoundError("the request body is not UTF-8") from None
    else:
        text = data
    # More brackets than the depth bound is the only way to exceed it; counting is C-fast.
    deep = text.count("[") + text.count("{") > max_depth
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JSONBoundError(f"the JSON body is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError:
        raise JSONBoundError("the request body is not valid JSON") from None
    if deep and isinstance(value, dict | list) and not _depth_ok(value, max_depth):
        raise JSONBoundError(f"the JSON body is nested more than {max_depth} levels deep")
    return value
