"""Logging: one logfmt line per event, a session id, a TRACE level, redaction.

Keys are fixed: ``ts level logger msg session peer user ...``.  The session id
lives in a contextvar so that every line of one SMTP/IMAP session carries it.
Passwords, AUTH payloads and message bodies are never logged; ``redact`` is the
last line of defence for TRACE transcripts (``AUTH PLAIN <b64>``,
``LOGIN user pass``, ``AUTHENTICATE`` continuations).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import sys
import time
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

session_id: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="-")


def new_session_id() -> str:
    """Short random id that ends up in every log line and error reply of a session."""
    return secrets.token_hex(5)


_REDACT = [
    (re.compile(rb"(?i)^(AUTH\s+(?:PLAIN|LOGIN)\s+)\S+"), rb"\1<redacted>"),
    (re.compile(rb"(?i)^(\S+\s+LOGIN\s+)(.*)$"), rb"\1<redacted>"),
    (re.compile(rb"(?i)^(\S+\s+AUTHENTICATE\s+\S+\s+)\S+"), rb"\1<redacted>"),
]


def redact(line: bytes) -> bytes:
    """Remove credentials from one protocol line (used by TRACE transcripts)."""
    for rx, repl in _REDACT:
        line = rx.sub(repl, line)
    return line


def _fmt(value: Any) -> str:
    s = str(value)
    if s == "" or any(c in s for c in ' ="\\\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"session={getattr(record, 'session', None) or session_id.get()}",
            f"msg={_fmt(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None)
        if fields:
            parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items())
        if record.exc_info:
            parts.append(f"exc={_fmt(self.formatException(record.exc_info))}")
        return " ".join(parts)


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``event(log, "smtp.accepted", rcpts=2, size=1234)``."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})


class TranscriptFilter(logging.Filter):
    """Keeps credentials and bodies out of aiosmtpd's transcript (logger ``mail.log``).

    Message lines (``DATA readline``) are dropped, and every bytes argument of a
    transcript line goes through :func:`redact` (aiosmtpd's own ``sanitize`` covers
    ``AUTH`` lines only).  Installed on the handler, so it sees every record.
    """

    _DROP = ("DATA readline", "_handle_client readline", "auth_%s returned")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("mail.log"):
            return True
        msg = str(record.msg)
        if msg.startswith(self._DROP):
            return False
        if isinstance(record.args, tuple) and ">>" in msg:  # client lines only
            record.args = tuple(redact(a) if isinstance(a, bytes) else a for a in record.args)
        return True


def set_level(level: str) -> None:
    """Root level from a config value; ``trace`` also turns on the SMTP transcript."""
    logging.getLogger().setLevel(TRACE if level == "trace" else getattr(logging, level.upper()))
    logging.getLogger("mail.log").setLevel(logging.DEBUG if level == "trace" else logging.WARNING)


def setup(level: str = "info", log_file: str = "") -> None:
    handler: logging.Handler
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(TRACE if level == "trace" else getattr(logging, level.upper()))
    # Library chatter that could contain protocol data stays at WARNING.
    for noisy in ("mail.log", "aiosmtpd", "asyncio", "aiosqlite", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler.addFilter(TranscriptFilter())
    set_level(level)
