"""Fixtures for EDS confirmation and online applications: a real directory (SQLite, and
PostgreSQL when ``ESAM_TEST_PG_URL`` is set), the test PKI, and an injectable clock.

"Nothing changed but an audit event" is checked with :meth:`Env.snapshot`: every row of
the tables these services write (challenges, confirmations, mailboxes, subscribers,
applications) plus the Maildirs, compared before and after, and :meth:`Env.audits`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from tests import eds_testing as t
from tests.conftest import write_config
from tests.unit.registration.conftest import db_url  # noqa: F401 - the parametrised database fixture
from tests.unit.registration.samples import INDIVIDUAL, LEGAL_ENTITY

T = TypeVar("T")

PASSWORD = "correct horse battery"
#: The applicant of the test PKI's individual certificates (valid checksum).
APPLICANT_IIN = t.DEFAULT_IIN
APPLICANT_BIN = t.DEFAULT_BIN
#: Another valid IIN (the sample applicant's).
OTHER_IIN = "850525400017"
#: Another valid BIN.
OTHER_BIN = "150340001236"


def individual_raw(username: str = "test.testov", iin: str = APPLICANT_IIN) -> dict[str, Any]:
    raw = copy.deepcopy(INDIVIDUAL)
    raw.pop("birth_date")
    raw.update(iin=iin, username=username, surname="Тестов", given_name="Тест", patronymic="Тестович")
    return raw


def legal_entity_raw(username: str = "test.too", bin: str = APPLICANT_BIN) -> dict[str, Any]:
    raw = copy.deepcopy(LEGAL_ENTITY)
    raw.update(bin=bin, username=username, name="ТОО «Тест»")
    return raw


class Clock:
    """A settable clock (aware UTC), starting at the real now."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class Env:
    """Registration + confirmation + online applications over one directory, on its own loop."""

    def __init__(self, tmp: Path, url: str, verifier: Any, ttl: int = 300) -> None:
        from esam_mail import config
        from esam_mail.directory.passwords import PasswordHasher
        from esam_mail.directory.sql import SqlDirectory
        from esam_mail.services.accounts.confirmation import ConfirmationService
        from esam_mail.services.accounts.online import OnlineApplications
        from esam_mail.services.accounts.registration import RegistrationService
        from esam_mail.store.maildir import MaildirStore

        self.cfg = config.load(
            write_config(tmp, directory={"url": url}, registration={"registry_policy": "accept"})
        )
        self.loop = asyncio.new_event_loop()
        self.directory = SqlDirectory(url, domain=self.cfg.mail.domain)
        self.store = MaildirStore(self.cfg.store_path, fsync=False)
        self.hasher = PasswordHasher(1024, 1, 1)
        self.clock = Clock()
        self.registration = RegistrationService(self.directory, self.store, self.hasher, self.cfg)
        self.confirmations = ConfirmationService(self.directory, verifier, ttl=ttl, clock=self.clock)
        self.online = OnlineApplications(self.registration, verifier, self.cfg, clock=self.clock)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.directory.close())
        self.loop.close()

    # -- making mailboxes ----------------------------------------------------------------
    def register_individual(self, raw: dict[str, Any] | None = None) -> Any:
        return self.run(
            self.registration.register_individual(
                raw or individual_raw(), channel="office", office_code="ALA01", employee_id="e-1",
                accepted_agreement=self.cfg.registration.agreement_version, password=PASSWORD,
            )
        )  # fmt: skip

    def register_legal_entity(self, raw: dict[str, Any] | None = None) -> Any:
        return self.run(
            self.registration.register_legal_entity(
                raw or legal_entity_raw(), channel="office", office_code="ALA01", employee_id="e-1",
                accepted_agreement=self.cfg.registration.agreement_version, password=PASSWORD,
            )
        )  # fmt: skip

    def service_mailbox(self, login: str = "abuse") -> Any:
        return self.run(self.directory.create_mailbox(login, "x", kind="service"))

    # -- inspecting ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row this feature may write, except the audit log."""
        from esam_mail.directory.models import (
            Application,
            EdsChallenge,
            EdsConfirmation,
            Mailbox,
            Subscriber,
        )

        cols = {
            EdsChallenge: ("id", "mailbox_id", "nonce", "expires_at", "used_at"),
            EdsConfirmation: ("id", "mailbox_id", "cert_fingerprint"),
            Mailbox: ("id", "login_norm", "state", "eds_confirmed"),
            Subscriber: ("id", "kind", "iin", "bin"),
            Application: ("id", "channel", "signer_fingerprint"),
        }

        async def go() -> dict[str, list[tuple[Any, ...]]]:
            out: dict[str, list[tuple[Any, ...]]] = {}
            async with self.directory.sessions() as s:
                for model, names in cols.items():
                    rows = (await s.execute(select(model).order_by(model.id))).scalars()
                    out[model.__tablename__] = [tuple(getattr(r, n) for n in names) for r in rows]
            return out

        snap = self.run(go())
        root = self.cfg.store_path
        snap["maildirs"] = sorted((p.name,) for p in root.iterdir()) if root.exists() else []
        return snap

    def audits(self) -> list[Any]:
        """Audit events, oldest first."""
        return list(reversed(self.run(self.directory.audit_list(limit=1000))))

    def mailbox(self, login: str) -> Any:
        return self.run(self.directory.get(login))


@pytest.fixture(scope="session")
def pki() -> t.DemoPki:
    return t.default_pki()


@pytest.fixture(scope="session")
def verifier(pki: t.DemoPki) -> Any:
    from esam_mail.services.accounts.eds import BuiltinVerifier

    return BuiltinVerifier([pki.root.cert])


@pytest.fixture
def env(tmp_path: Path, db_url: str, verifier: Any) -> Iterator[Env]:  # noqa: F811
    e = Env(tmp_path, db_url, verifier)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def make_env(tmp_path: Path, db_url: str) -> Iterator[Any]:  # noqa: F811
    """An Env with another verifier (``None``: EDS not configured) or TTL."""
    made: list[Env] = []

    def make(verifier: Any, ttl: int = 300) -> Env:
        d = tmp_path / f"env{len(made)}"
        d.mkdir()
        e = Env(d, db_url, verifier, ttl)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()
