"""The SMTP reply constants stay honest: name, code and enhanced status agree
(RFC 5321 4.2, RFC 3463), and every constant is used by the server or a test."""

from __future__ import annotations

import re
from pathlib import Path

from esam_mail.smtp import codes

ROOT = Path(__file__).resolve().parents[2]
CONSTANTS = {k: v for k, v in vars(codes).items() if re.fullmatch(r"R\d{3}_[A-Z0-9_]+", k)}


def test_there_are_constants() -> None:
    assert len(CONSTANTS) >= 10


def test_name_code_and_enhanced_class_agree() -> None:
    bad = []
    for name, text in CONSTANTS.items():
        m = re.fullmatch(r"(\d{3}) ([245])\.(\d{1,3})\.(\d{1,3}) \S.*", text)
        if m is None or m.group(1) != name[1:4] or m.group(2) != name[1]:
            bad.append(f"{name} = {text!r}")
    assert not bad, bad


def test_enhanced_defaults_match_their_reply_class() -> None:
    for code, enhanced in codes.ENHANCED_DEFAULTS.items():
        assert enhanced[0] == code[0], (code, enhanced)


def test_every_constant_is_used() -> None:
    sources = [p for d in ("esam_mail", "tests") for p in (ROOT / d).rglob("*.py")]
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources if p.name != "codes.py" and p != Path(__file__))
    unused = [name for name in CONSTANTS if not re.search(rf"\b{name}\b", text)]
    assert not unused, f"unused SMTP reply constants: {unused}"
