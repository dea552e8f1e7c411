"""Session secret, CSRF tokens and the form reader every HTML form goes through.

CSRF: a synchronizer token kept in the signed session (``csrf``), rendered into every
form as ``<input type="hidden" name="csrf_token">`` by the ``csrf_field()`` template
helper, and checked in constant time by :func:`read_form` before a handler sees the
form.  A cross-site ``Origin`` is refused as well (defence in depth; browsers send it on
every POST).  The JSON API under ``/api/`` is not cookie-authenticated (HTTP Basic or no
credentials), so it needs no token.  Starlette has no CSRF of its own and the maintained
add-ons (starlette-csrf: double-submit cookie) either are not packaged for us or do not
bind the token to the session, so this small, tested module does it.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from esam_mail import fsio

CSRF_FIELD = "csrf_token"
MAX_FORM_FIELDS = 200
MAX_FORM_FILES = 20


def session_secret(cfg: Any) -> str:
    """The key that signs session cookies: ``<data_dir>/web/session.key`` (made once, 0600,
    shared by the worker processes of a node; delete it to end every session).

    Made under an flock of ``session.key.lock`` and written whole (temp file, fsync,
    rename): a worker killed half-way leaves no key or the whole key, never an empty one,
    and a file that does not hold a key of ours is replaced.
    """
    path = Path(cfg.data_dir) / "web" / "session.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = _read_key(path)
    if key is not None:
        return key
    fd = os.open(path.with_name("session.key.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
        key = _read_key(path)  # another worker may have made it while we waited
        if key is None:
            key = secrets.token_urlsafe(48)
            fsio.atomic_write(path, (key + "\n").encode("ascii"), mode=0o600)
        return key
    finally:
        os.close(fd)


def _read_key(path: Path) -> str | None:
    try:
        key = path.read_text("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    return key if len(key) >= 32 else None  # shorter: a leftover or no real key


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def new_csrf(request: Request) -> None:
    """A fresh token (after login: a token seen before login is worthless afterwards)."""
    request.session["csrf"] = secrets.token_urlsafe(32)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # old browsers and non-browser clients; the token still decides
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def read_form(request: Request, *, max_files: int = 0, max_part_size: int = 1024 * 1024) -> FormData:
    """The posted form, after the CSRF check (403 when the token is missing or wrong)."""
    if not _same_origin(request):
        raise HTTPException(403, "cross-site form")
    form = await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS, max_part_size=max_part_size)
    sent = form.get(CSRF_FIELD)
    want = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(want, str) or not hmac.compare_digest(sent, want):
        raise HTTPException(403, "csrf")
    return form
