"""Which logins can be registered (rules, para. 4, 11; issue 16).

A login is the local part of an address that identifies its holder, so it must not be
mistaken for someone's identity or for the state or the operator:

* no all-digit login and no login carrying a run of 12 digits: such a name looks like an IIN
  or BIN (``870322400007`` is someone's IIN) or a phone number;
* no reserved or protected name: the RFC 2142 roles (``identity.DEFAULT_RESERVED_NAMES``),
  the shipped list of state bodies and operator services (``esam_mail/data/reserved-names.txt``,
  also at ``conf/reserved-names.txt``), the operator's file (``mail.reserved_names_file``) and
  inline list (``mail.reserved_names``), the hybrid gateway and the mail aliases.

The files are read once per process (cached by path and modification time), so a changed
operator file is picked up by the next CLI call or a restart.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from esam_mail.errors import ConfigError
from esam_mail.services.accounts.identity import normalize_username

__all__ = ["DEFAULT_RESERVED_FILE", "check_login", "parse_reserved", "read_reserved_file", "reserved_names"]

DEFAULT_RESERVED_FILE = Path(__file__).resolve().parents[2] / "data" / "reserved-names.txt"


def parse_reserved(text: str) -> tuple[str, ...]:
    """Entries of a reserved-names file: one per line, ``#`` comments, lower-cased."""
    out = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip().lower()
        if entry:
            out.append(entry)
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _read(path: str, _mtime_ns: int) -> tuple[str, ...]:
    return parse_reserved(Path(path).read_text(encoding="utf-8"))


def read_reserved_file(path: str | os.PathLike[str], *, key: str = "mail.reserved_names_file") -> tuple[str, ...]:
    """The entries of one file; :class:`ConfigError` naming *key* when it cannot be read."""
    p = Path(path)
    try:
        return _read(str(p), p.stat().st_mtime_ns)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{key}: cannot read the reserved-names file {p} ({e.__class__.__name__})"]) from None


def reserved_names(cfg: Any) -> list[str]:
    """Every reserved name and pattern in force, on top of the RFC 2142 roles identity.py refuses."""
    names = [*read_reserved_file(DEFAULT_RESERVED_FILE, key="built-in reserved-names list")]
    operator_file = getattr(cfg.mail, "reserved_names_file", "")
    if operator_file:
        names.extend(read_reserved_file(operator_file))
    names.extend(cfg.mail.reserved_names)
    names.append(cfg.hybrid.gateway)
    # the role aliases `esam init` creates (the directory also refuses any login that is, or
    # ever was, an alias: esam_mail/directory/aliases.py)
    aliases = getattr(cfg, "aliases", None)
    names.extend(getattr(aliases, "roles", None) or ())
    names.append(getattr(aliases, "operator_mailbox", "") or "operator")
    return names


def check_login(value: object, cfg: Any, *, field: str = "username") -> str:
    """Normalise a requested login and refuse it when it may not be registered."""
    return normalize_username(value, field=field, reserved=reserved_names(cfg))
