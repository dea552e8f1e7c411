"""Two-step login for the web (TOTP, RFC 6238, with pyotp) and app passwords for mail programs.

* A subscriber turns TOTP on in the account: the secret is shown (and as a QR code), one
  code proves the authenticator app has it, then ten one-time recovery codes are shown once.
* With TOTP on, the web asks for a code after the password; IMAP and SMTP accept only
  app passwords (random, shown once, one per program, revocable) and refuse the main
  password, which alone no longer opens the mailbox.
* Codes: 6 digits, 30-second steps, one step of clock drift either way; a step is accepted
  once (replay).  Wrong codes count in the directory's failure table (``totp:<login>``)
  and lock further tries for ``lock_seconds`` after ``max_failures``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pyotp

from esam_mail.directory.mfa import AppPasswordRow, MfaTables

__all__ = ["AppPasswordRow", "NewAppPassword", "SecondFactorService", "digest"]

ISSUER = "esam"
_APP_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read off the screen and typed


def digest(secret: str) -> str:
    return hashlib.sha256(secret.strip().replace(" ", "").replace("-", "").lower().encode()).hexdigest()


@dataclass(frozen=True)
class NewAppPassword:
    id: int
    name: str
    password: str  # shown once


class SecondFactorService:
    def __init__(self, directory: Any, *, max_failures: int = 5, lock_seconds: int = 300,
                 clock: Any = time.time) -> None:
        self.directory = directory
        self.tables = MfaTables(directory)
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.clock = clock

    # -- setting up -----------------------------------------------------------------------

    @staticmethod
    def new_secret() -> str:
        return pyotp.random_base32()

    @staticmethod
    def provisioning_uri(secret: str, address: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=ISSUER)

    def _step(self, secret: str, code: str) -> int | None:
        """The step ``code`` belongs to (now, or one step either side), else None."""
        code = code.strip().replace(" ", "")
        if not (code.isdigit() and len(code) == 6):
            return None
        totp = pyotp.TOTP(secret)
        now = self.clock()
        for delta in (0, -1, 1):
            at = now + delta * totp.interval
            if secrets.compare_digest(totp.at(at), code):
                return int(at // totp.interval)
        return None

    async def enable(self, mailbox_id: int, secret: str, code: str) -> list[str] | None:
        """Turn TOTP on if ``code`` matches ``secret``; returns the ten recovery codes (shown once)."""
        step = self._step(secret, code)
        if step is None:
            return None
        codes = ["-".join(secrets.token_hex(3) for _ in range(2)) for _ in range(10)]
        await self.tables.enable(mailbox_id, secret, step, [digest(c) for c in codes])
        return codes

    async def disable(self, mailbox_id: int) -> None:
        await self.tables.disable(mailbox_id)

    async def enabled(self, mailbox_id: int) -> bool:
        return await self.tables.secret(mailbox_id) is not None

    # -- logging in -----------------------------------------------------------------------

    async def locked(self, login: str) -> bool:
        rows = await self.directory.failures([f"totp:{login}"])
        row = rows.get(f"totp:{login}")
        if row is None or row.locked_until is None:
            return False
        until = row.locked_until if row.locked_until.tzinfo else row.locked_until.replace(tzinfo=dt.UTC)
        return bool(until > dt.datetime.now(dt.UTC))

    async def verify(self, mailbox_id: int, login: str, code: str) -> bool:
        """A TOTP code or an unused recovery code; counts failures and locks after too many."""
        key = f"totp:{login}"
        if await self.locked(login):
            return False
        found = await self.tables.secret(mailbox_id)
        if found is None:
            return False
        secret, _ = found
        step = self._step(secret, code)
        ok = False
        if step is not None:
            ok = await self.tables.spend_step(mailbox_id, step)
        elif code.strip():
            ok = await self.tables.spend_recovery(mailbox_id, digest(code))
        if ok:
            await self.directory.clear_failures([key])
        else:
            await self.directory.record_failure([key], self.max_failures, self.lock_seconds)
        return ok

    async def recovery_left(self, mailbox_id: int) -> int:
        return await self.tables.recovery_left(mailbox_id)

    # -- app passwords --------------------------------------------------------------------

    async def create_app_password(self, mailbox_id: int, name: str) -> NewAppPassword:
        password = "-".join("".join(secrets.choice(_APP_ALPHABET) for _ in range(4)) for _ in range(5))
        app_id = await self.tables.add_app_password(mailbox_id, name, digest(password))
        return NewAppPassword(app_id, name, password)

    async def app_passwords(self, mailbox_id: int) -> list[AppPasswordRow]:
        return await self.tables.app_passwords(mailbox_id)

    async def delete_app_password(self, mailbox_id: int, app_id: int) -> bool:
        return await self.tables.delete_app_password(mailbox_id, app_id)

    async def check_app_password(self, mailbox_id: int, password: str) -> bool:
        return await self.tables.use_app_password(mailbox_id, digest(password))
