"""Fixtures for the registration and directory tests, on SQLite and on PostgreSQL.

``db_url`` is parametrised: ``sqlite`` (a file in tmp) and ``postgres`` (a
fresh database ``esam_t_<random>`` on the server given by ``ESAM_TEST_PG_URL``,
dropped afterwards).  Without ``ESAM_TEST_PG_URL`` the PostgreSQL leg is
skipped, or fails when ``ESAM_REQUIRE_PG=1`` (CI must not silently lose it).
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import os
import secrets
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from tests.conftest import migrate_directory, write_config
from tests.unit.registration.samples import INDIVIDUAL, LEGAL_ENTITY

T = TypeVar("T")


def pg_server_url() -> str:
    """ESAM_TEST_PG_URL, or skip (fail with ESAM_REQUIRE_PG=1) with the reason."""
    url = os.environ.get("ESAM_TEST_PG_URL", "")
    if not url:
        why = (
            "ESAM_TEST_PG_URL is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test; "
            "scripts/test.sh sets it when PostgreSQL answers on 127.0.0.1:5432)"
        )
        if os.environ.get("ESAM_REQUIRE_PG") == "1":
            pytest.fail(f"ESAM_REQUIRE_PG=1 but {why}")
        pytest.skip(why)
    return url


async def _admin(url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        database="postgres",
        timeout=10,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _database_url(server: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server).set(database=name).render_as_string(hide_password=False)


#: per test process: the database migrated once, which migrated PgDatabases are copied from
_PG_TEMPLATE: list[str] = []


def _pg_template(server: str) -> str:
    """``esam_tpl_<random>``: created and migrated on first use, dropped when the process
    ends.  Each test process (xdist worker) has its own, so no copy ever races a migration."""
    if not _PG_TEMPLATE:
        from esam_mail.directory.sql import upgrade_schema_sync

        name = f"esam_tpl_{secrets.token_hex(6)}"
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
        atexit.register(lambda: asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        upgrade_schema_sync(_database_url(server, name))
        _PG_TEMPLATE.append(name)
    return _PG_TEMPLATE[0]


class PgDatabase:
    """A throw-away database on the test server: ``with PgDatabase() as url: ...``.

    ``migrated=True``: at the migrations' head, copied (``CREATE DATABASE ... TEMPLATE``) from
    a database this process migrated once, instead of an Alembic run per test."""

    def __init__(self, migrated: bool = False) -> None:
        self.server = pg_server_url()
        self.name = f"esam_t_{secrets.token_hex(6)}"
        self.migrated = migrated

    def __enter__(self) -> str:
        template = f' TEMPLATE "{_pg_template(self.server)}"' if self.migrated else ""
        asyncio.run(_admin(self.server, f'CREATE DATABASE "{self.name}"{template}'))
        return _database_url(self.server, self.name)

    def __exit__(self, *exc: object) -> None:
        asyncio.run(_admin(self.server, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty directory database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}"
        migrate_directory(url)
        yield url
        return
    with PgDatabase(migrated=True) as url:
        yield url


class Env:
    """A RegistrationService over a real directory and Maildir store, on its own loop."""

    def __init__(
        self, tmp: Path, url: str, config_path: Path | None = None, **sections: dict[str, Any]
    ) -> None:
        from esam_mail import config
        from esam_mail.directory.passwords import PasswordHasher
        from esam_mail.directory.sql import SqlDirectory
        from esam_mail.store.maildir import MaildirStore

        sections.setdefault("directory", {})["url"] = url
        reg = sections.setdefault("registration", {})
        reg.setdefault("registry_policy", "accept")
        self.tmp = tmp
        self.cfg = config.load(config_path or write_config(tmp, **sections))
        self.loop = asyncio.new_event_loop()
        self.directory = SqlDirectory(url, domain=self.cfg.mail.domain)
        self.store = MaildirStore(self.cfg.store_path, fsync=False)
        self.hasher = PasswordHasher(1024, 1, 1)
        self.service = self.make_service()

    def make_service(self, registry: Any = None) -> Any:
        from esam_mail.services.accounts.registration import RegistrationService

        return RegistrationService(self.directory, self.store, self.hasher, self.cfg, registry)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.directory.close())
        self.loop.close()

    # -- registering ---------------------------------------------------------------------
    def individual(self, raw: dict[str, Any] | None = None, service: Any = None, **kw: Any) -> Any:
        kw.setdefault("channel", "office")
        kw.setdefault("office_code", "ALA01")
        kw.setdefault("employee_id", "e-17")
        kw.setdefault("accepted_agreement", self.cfg.registration.agreement_version)
        kw.setdefault("password", "correct horse battery")
        svc = service or self.service
        return self.run(svc.register_individual(copy.deepcopy(INDIVIDUAL) if raw is None else raw, **kw))

    def legal_entity(self, raw: dict[str, Any] | None = None, service: Any = None, **kw: Any) -> Any:
        kw.setdefault("channel", "office")
        kw.setdefault("office_code", "AST02")
        kw.setdefault("employee_id", "e-18")
        kw.setdefault("accepted_agreement", self.cfg.registration.agreement_version)
        kw.setdefault("password", "correct horse battery")
        svc = service or self.service
        return self.run(svc.register_legal_entity(copy.deepcopy(LEGAL_ENTITY) if raw is None else raw, **kw))

    # -- inspecting ----------------------------------------------------------------------
    def count(self, model: Any) -> int:
        async def go() -> int:
            async with self.directory.sessions() as s:
                return int((await s.execute(select(func.count()).select_from(model))).scalar_one())

        return self.run(go())

    def rows(self, model: Any) -> list[Any]:
        async def go() -> list[Any]:
            async with self.directory.sessions() as s:
                return list((await s.execute(select(model).order_by(model.id))).scalars())

        return self.run(go())

    def written(self) -> dict[str, int]:
        """Rows of the application tables plus Maildirs on disk."""
        from esam_mail.directory.models import Application, Mailbox, Subscriber

        root = self.cfg.store_path
        # users' maildirs; not the store's .esam-locks (the processes' dotlock sources)
        maildirs = len([p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]) if root.exists() else 0
        return {
            "subscribers": self.count(Subscriber),
            "applications": self.count(Application),
            "mailboxes": self.count(Mailbox),
            "maildirs": maildirs,
        }


NOTHING = {"subscribers": 0, "applications": 0, "mailboxes": 0, "maildirs": 0}


@pytest.fixture
def make_env(tmp_path: Path, db_url: str) -> Iterator[Any]:
    made: list[Env] = []

    def make(**sections: dict[str, Any]) -> Env:
        d = tmp_path / f"env{len(made)}"
        d.mkdir()
        e = Env(d, db_url, **sections)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


@pytest.fixture
def env(make_env: Any) -> Env:
    return make_env()  # type: ignore[no-any-return]


@pytest.fixture
def individual() -> dict[str, Any]:
    return copy.deepcopy(INDIVIDUAL)


@pytest.fixture
def legal_entity() -> dict[str, Any]:
    return copy.deepcopy(LEGAL_ENTITY)
