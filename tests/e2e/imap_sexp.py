"""Parse imaplib FETCH answers (with literals) into nested Python lists, for the e2e tests.

imaplib hands back one untagged response as zero or more ``(head ending in {n}, literal)``
tuples followed by the bytes of the line's rest.  ``fetch_items`` turns that into
``{uid: {item name: value}}`` where values are bytes (atoms, quoted strings and
literals), None (NIL) or lists (parenthesised).
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|(NIL)(?=[\s()]|$)|([^\s()"]+))')
_LITERAL_TAIL = re.compile(rb"\{(\d+)\+?\}$")

Token = tuple[str, Any]


def _tokens(text: bytes) -> list[Token]:
    out: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot tokenize {text[pos : pos + 40]!r}")
        pos = m.end()
        if m.group(1):
            out.append(("(", None))
        elif m.group(2):
            out.append((")", None))
        elif m.group(3) is not None:
            out.append(("s", re.sub(rb"\\(.)", rb"\1", m.group(3))))
        elif m.group(4):
            out.append(("s", None))
        else:
            out.append(("s", m.group(5)))
    return out


def _build(tokens: list[Token]) -> list[Any]:
    stack: list[list[Any]] = [[]]
    for kind, value in tokens:
        if kind == "(":
            stack.append([])
        elif kind == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(value)
    if len(stack) != 1:
        raise ValueError("unbalanced parentheses")
    return stack[0]


def responses(data: list[Any]) -> list[list[Any]]:
    """Every untagged response in ``data`` (imaplib's list) as a parsed list."""
    out: list[list[Any]] = []
    toks: list[Token] = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, lit = item
            m = _LITERAL_TAIL.search(head)
            if m is None:
                raise ValueError(f"tuple without a literal: {head!r}")
            toks += _tokens(head[: m.start()])
            toks.append(("s", lit))
            continue
        toks += _tokens(item)
        out.append(_build(toks))
        toks = []
    if toks:
        out.append(_build(toks))
    return out


def fetch_items(data: list[Any]) -> dict[int, dict[str, Any]]:
    """``{UID: {ITEM: value}}`` from a (UID) FETCH answer whose items include UID."""
    result: dict[int, dict[str, Any]] = {}
    for resp in responses(data):
        _seq, items = resp[0], resp[1]
        d = {items[i].decode().upper(): items[i + 1] for i in range(0, len(items), 2)}
        result[int(d["UID"])] = d
    return result
