"""Code run in child processes by the concurrency tests (importable under 'spawn')."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from tests.unit.registration.samples import INDIVIDUAL


def distinct_iins(n: int) -> list[str]:
    """``n`` valid IINs of women born 1985-05-25 (serials 0001, 0002, ...)."""
    from esam_mail.services.accounts.identity import kz_check_digit

    out: list[str] = []
    serial = 1
    while len(out) < n:
        first11 = f"8505254{serial:04d}"
        check = kz_check_digit(first11)
        if check is not None:
            out.append(f"{first11}{check}")
        serial += 1
    return out


def application(iin: str, username: str) -> dict[str, Any]:
    raw = copy.deepcopy(INDIVIDUAL)
    raw.update(iin=iin, username=username)
    return raw


def register_same_login(config_path: str, iin: str, username: str, barrier: Any, results: Any) -> None:
    """Connect, wait for every sibling, then register ``username``; report the outcome."""
    from esam_mail import config
    from esam_mail.directory.passwords import PasswordHasher
    from esam_mail.directory.sql import SqlDirectory
    from esam_mail.errors import LoginTaken
    from esam_mail.services.accounts.registration import RegistrationService
    from esam_mail.store.maildir import MaildirStore

    cfg = config.load(config_path)

    async def go() -> tuple[str, str]:
        from sqlalchemy import text

        directory = SqlDirectory(cfg.directory_url, domain=cfg.mail.domain)
        try:
            async with directory.sessions() as s:  # connect before the start line
                await s.execute(text("SELECT 1"))
            service = RegistrationService(
                directory, MaildirStore(cfg.store_path, fsync=False), PasswordHasher(1024, 1, 1), cfg
            )
            await asyncio.to_thread(barrier.wait, 60)
            try:
                done = await service.register_individual(
                    application(iin, username),
                    channel="office",
                    office_code="ALA01",
                    employee_id="e-1",
                    accepted_agreement=cfg.registration.agreement_version,
                    password="correct horse battery",
                )
            except LoginTaken as e:
                return "taken", str(e)
            return "ok", done.address
        finally:
            await directory.close()

    try:
        results.put(asyncio.run(go()))
    except BaseException as e:  # reported to the test, which fails on it
        results.put(("error", repr(e)))
