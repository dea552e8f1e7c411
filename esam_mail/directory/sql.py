"""SqlDirectory: the directory over SQLAlchemy 2 async (SQLite or PostgreSQL).

Uniqueness is enforced by the database (``uq_mailboxes_login_norm``,
``uq_mailboxes_address_norm``, ``uq_mailboxes_owner_key_open``); an
``IntegrityError`` on insert becomes :class:`~esam_mail.errors.LoginTaken`.
Rows of mailboxes are never deleted, so a login once issued stays taken.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import os
import sqlite3
import threading
import unicodedata
import weakref
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, event, exists, func, make_url, select, text, update
from sqlalchemy.dialects import sqlite as sqlite_dialects
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from esam_mail.directory.models import (
    Alias,
    AuditEvent,
    AuthFailure,
    Mailbox,
    SecondFactor,
    Subscriber,
    utcnow,
)
from esam_mail.errors import LoginTaken, NotFound

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_login(login: str) -> str:
    """The form uniqueness is checked on: NFC, case-folded, stripped."""
    return unicodedata.normalize("NFC", login.strip()).casefold()


def normalize_address(address: str) -> str:
    local, _, domain = address.strip().rpartition("@")
    if not local:
        return normalize_login(address)
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return f"{normalize_login(local)}@{domain.lower()}"


async def lock_local_name(s: AsyncSession, name_norm: str) -> None:
    """Serialize writers of one local name (a login or an alias) until the transaction ends.

    A login and an alias live in two tables, so no UNIQUE constraint spans them: each
    writer takes this lock, checks the other table, then inserts.  SQLite needs nothing
    (writers BEGIN IMMEDIATE: one at a time); PostgreSQL takes a transaction-level
    advisory lock on the name's hash.
    """
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": "esam-name:" + name_norm})


class OwnerKeyTaken(LoginTaken):
    """The owner (an IIN under the one-mailbox-per-IIN policy) already has an open mailbox.

    A subclass of :class:`LoginTaken` so that older callers keep working;
    registration turns it into a field error on ``iin``.
    """


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    id: int
    login: str
    login_norm: str
    address: str
    state: str
    kind: str
    quota_bytes: int | None
    password_hash: str
    subscriber_id: int | None
    eds_confirmed: bool
    created_at: dt.datetime

    @property
    def open(self) -> bool:
        return self.state == "active"


@dataclass(frozen=True, slots=True)
class LoginState:
    """:meth:`SqlDirectory.login_state`: one lookup for a login attempt."""

    record: MailboxRecord | None
    failures: dict[str, AuthFailure]
    second_factor: bool


@dataclass(frozen=True, slots=True)
class OwnerRecord:
    """The subscriber who holds a mailbox: an individual (IIN), a legal entity (BIN) or a service."""

    id: int
    kind: str
    iin: str | None
    bin: str | None
    display_name: str
    names: tuple[str, ...]
    language: str = "kk"
    postal_address: tuple[str, ...] = ()  # residence (individual) or actual (legal entity) address

    @property
    def number(self) -> str | None:
        return self.iin or self.bin


def _owner(sub: Subscriber) -> OwnerRecord:
    data = sub.data if isinstance(sub.data, dict) else {}
    keys = ("surname", "given_name", "patronymic", "name")
    names = tuple(v for k in keys if isinstance(v := data.get(k), str) and v)
    rep = data.get("representative")
    if isinstance(rep, dict):
        names += tuple(v for k in keys[:3] if isinstance(v := rep.get(k), str) and v)
    postal: tuple[str, ...] = ()
    for key in ("residence_address", "actual_address", "legal_address"):
        addr = data.get(key)
        if isinstance(addr, dict) and addr.get("locality") and addr.get("postcode"):
            street = ", ".join(str(addr[k]) for k in ("street", "house") if addr.get(k))
            if addr.get("apartment"):
                street += f", {addr['apartment']}"
            postal = tuple(str(p) for p in (street, addr.get("locality"), addr.get("region"), addr.get("postcode")) if p)
            break
    return OwnerRecord(sub.id, sub.kind, sub.iin, sub.bin, sub.display_name, names,
                       getattr(sub, "language", None) or "kk", postal)


def _record(m: Mailbox) -> MailboxRecord:
    return MailboxRecord(
        id=m.id,
        login=m.login,
        login_norm=m.login_norm,
        address=m.address,
        state=m.state,
        kind=m.kind,
        quota_bytes=m.quota_bytes,
        password_hash=m.password_hash,
        subscriber_id=m.subscriber_id,
        eds_confirmed=m.eds_confirmed,
        created_at=m.created_at,
    )


class _SqliteReads:
    """The login lookup of a SQLite directory in one worker-thread hop, on plain sqlite3
    connections (one per thread, read transactions only).

    Through SQLAlchemy's async session the same two SELECTs cost about a dozen aiosqlite
    thread hand-offs (cursor, execute, fetch, close, BEGIN, ROLLBACK) and ~2.7 ms of CPU
    per login, most of a cached IMAP login (issue 20); here ~0.15 ms.  The statements are
    SQLAlchemy Core over the models, compiled once for the SQLite dialect, and every column
    goes through its type's own result processor: the same SQL and the same values as the
    session path (PostgreSQL keeps that path; asyncpg has no thread hops).
    """

    def __init__(self, path: str, threads: int = 2) -> None:
        self.path = path
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="dirread")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._dialect = sqlite_dialects.pysqlite.dialect()
        self._compiled: dict[tuple[str, int], tuple[str, list[str], list[Any]]] = {}
        fields = list(MailboxRecord.__dataclass_fields__)
        has_2fa = exists().where(SecondFactor.mailbox_id == Mailbox.id).label("second_factor")
        cols = [getattr(Mailbox, f).label(f) for f in fields]
        self._by = {
            "login": select(*cols, has_2fa).where(Mailbox.login_norm == bindparam("key")),
            "address": select(*cols, has_2fa).where(Mailbox.address_norm == bindparam("key")),
        }

    def _statement(self, name: str, n: int = 0) -> tuple[str, list[str], list[Any]]:
        """(SQL, parameter names in order, result processors) of a statement, compiled once."""
        got = self._compiled.get((name, n))
        if got is None:
            if name == "failures":
                t = AuthFailure.__table__
                stmt = select(t.c.key, t.c.count, t.c.first_at, t.c.locked_until).where(
                    t.c.key.in_([bindparam(f"k{i}") for i in range(n)]))
            else:
                stmt = self._by[name]
            c = stmt.compile(dialect=self._dialect)
            procs = [col.type.dialect_impl(self._dialect).result_processor(self._dialect, None)
                     for col in stmt.selected_columns]
            got = (str(c), list(c.positiontup or []), procs)
            self._compiled[(name, n)] = got
        return got

    def _run(self, conn: sqlite3.Connection, name: str, params: dict[str, Any], n: int = 0) -> list[list[Any]]:
        sql, order, procs = self._statement(name, n)
        rows = conn.execute(sql, [params[k] for k in order]).fetchall()
        return [[v if p is None or v is None else p(v) for p, v in zip(procs, row, strict=True)] for row in rows]

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never a connection across fork
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._conns.append(conn)
        return conn

    def login_state(self, key: str, failure_keys: builtins.list[str]) -> LoginState:
        """Worker thread: :meth:`SqlDirectory.login_state` in one read transaction."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            rows = self._run(conn, "failures", {f"k{i}": k for i, k in enumerate(failure_keys)},
                             len(failure_keys)) if failure_keys else []
            found = self._run(conn, "login", {"key": key})
            if not found and "@" in key:
                found = self._run(conn, "address", {"key": key})
        finally:
            conn.execute("ROLLBACK")
        failures = {r[0]: AuthFailure(key=r[0], count=r[1], first_at=r[2], locked_until=r[3]) for r in rows}
        if not found:
            return LoginState(None, failures, False)
        *values, second = found[0]
        return LoginState(MailboxRecord(*values), failures, bool(second))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


def _sqlite_file(url: str) -> str | None:
    """The file of a plain SQLite URL (no query options, not in memory), else None."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.query or not u.database or u.database == ":memory:":
        return None
    return u.database


# Engines that opened a database connection on a running event loop, per loop.  An engine
# left undisposed when its loop closes leaves pooled aiosqlite connections behind whose worker
# threads later fail ("Event loop is closed") when the connections are collected;
# dispose_loop_engines() is the safety net every CLI asyncio.run goes through.
_OPENED_ON: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[AsyncEngine]] = (
    weakref.WeakKeyDictionary())


def _track_loop(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _opened(_dbapi_conn: Any, _rec: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        _OPENED_ON.setdefault(loop, weakref.WeakSet()).add(engine)


async def dispose_loop_engines() -> int:
    """Dispose every engine that connected on the running loop (a no-op for one already
    disposed); return how many there were.  Call it before the loop closes."""
    engines = list(_OPENED_ON.pop(asyncio.get_running_loop(), ()))
    for engine in engines:
        await engine.dispose()
    return len(engines)


def make_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    engine = _make_engine(url, pool_size)
    _track_loop(engine)
    return engine


def _make_engine(url: str, pool_size: int) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # Take the write lock up front: avoids SQLITE_BUSY upgrade deadlocks
            # between processes (see SQLAlchemy's pysqlite transaction notes).
            # Pure lookups (``SqlDirectory.readers``) BEGIN deferred: WAL readers never
            # wait, so RCPT/LOGIN lookups of several workers do not queue on the lock.
            read_only = conn.get_execution_options().get("esam_read_only")
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        # let SQLAlchemy's "begin" event own BEGIN
        @event.listens_for(engine.sync_engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def upgrade_schema_sync(url: str) -> None:
    """Run Alembic migrations up to head (used by ``esam init`` and tests)."""
    import asyncio

    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)

    async def run() -> None:
        engine = make_engine(url)
        try:  # disposed also when a migration fails (else its aiosqlite thread outlives the loop)
            async with engine.connect() as conn:

                def _up(sync_conn: Any) -> None:
                    cfg.attributes["connection"] = sync_conn
                    command.upgrade(cfg, "head")

                await conn.run_sync(_up)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


class SqlDirectory:
    """Mailbox lookups and writes; one instance per process."""

    def __init__(self, url: str, *, domain: str, pool_size: int = 5) -> None:
        self.url = url
        self.domain = domain.lower()
        self.engine = make_engine(url, pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # sessions that only read (never write through these: no upgrade to a write lock)
        self.readers = async_sessionmaker(self.engine.execution_options(esam_read_only=True),
                                          expire_on_commit=False)
        file = _sqlite_file(url)
        self._direct = _SqliteReads(file) if file is not None else None

    async def close(self) -> None:
        if self._direct is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._direct.close)
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as s, s.begin():
            yield s

    # -- lookups -----------------------------------------------------------------------
    def login_of(self, username: str) -> str:
        """Accept ``login`` or ``login@ourdomain``; return the normalized login."""
        norm = normalize_address(username) if "@" in username else normalize_login(username)
        local, _, domain = norm.rpartition("@")
        if local and domain == self.domain:
            return local
        return norm

    async def get(self, username: str) -> MailboxRecord | None:
        key = self.login_of(username)
        async with self.readers() as s:
            m = (await s.execute(select(Mailbox).where(Mailbox.login_norm == key))).scalar_one_or_none()
            if m is None and "@" in key:
                m = (await s.execute(select(Mailbox).where(Mailbox.address_norm == key))).scalar_one_or_none()
            return _record(m) if m else None

    async def login_state(self, username: str, failure_keys: builtins.list[str]) -> LoginState:
        """What a password login needs, in one read transaction: the mailbox, whether it has a
        second factor, and the failure counters of ``failure_keys``."""
        key = self.login_of(username)
        if self._direct is not None:  # SQLite: one thread hop (see _SqliteReads)
            return await asyncio.get_running_loop().run_in_executor(
                self._direct.pool, self._direct.login_state, key, failure_keys)
        has_2fa = exists().where(SecondFactor.mailbox_id == Mailbox.id)
        async with self.readers() as s:
            failures = {
                r.key: r
                for r in (await s.execute(select(AuthFailure).where(AuthFailure.key.in_(failure_keys)))).scalars()
            }
            row = (await s.execute(select(Mailbox, has_2fa).where(Mailbox.login_norm == key))).first()
            if row is None and "@" in key:
                row = (await s.execute(select(Mailbox, has_2fa).where(Mailbox.address_norm == key))).first()
        if row is None:
            return LoginState(None, failures, False)
        return LoginState(_record(row[0]), failures, bool(row[1]))

    async def get_many(self, logins: Iterable[str]) -> dict[str, MailboxRecord]:
        """Records of these normalized logins (absent ones left out): one query."""
        keys = sorted(set(logins))
        out: dict[str, MailboxRecord] = {}
        async with self.readers() as s:
            for i in range(0, len(keys), 500):
                q = select(Mailbox).where(Mailbox.login_norm.in_(keys[i : i + 500]))
                for m in (await s.execute(q)).scalars():
                    out[m.login_norm] = _record(m)
        return out

    async def by_address(self, address: str) -> MailboxRecord | None:
        key = normalize_address(address)
        async with self.sessions() as s:
            m = (await s.execute(select(Mailbox).where(Mailbox.address_norm == key))).scalar_one_or_none()
            return _record(m) if m else None

    async def owner(self, subscriber_id: int | None) -> OwnerRecord | None:
        """The subscriber holding a mailbox (``None`` for a mailbox without one)."""
        if subscriber_id is None:
            return None
        async with self.readers() as s:
            sub = await s.get(Subscriber, subscriber_id)
            return _owner(sub) if sub is not None else None

    async def by_id(self, mailbox_id: int) -> MailboxRecord | None:
        async with self.readers() as s:
            m = await s.get(Mailbox, mailbox_id)
            return _record(m) if m else None

    async def mailboxes_of(self, number: str) -> builtins.list[MailboxRecord]:
        """Every mailbox held by the subscriber(s) with this IIN or BIN, oldest first."""
        async with self.readers() as s:
            q = (
                select(Mailbox)
                .join(Subscriber, Subscriber.id == Mailbox.subscriber_id)
                .where((Subscriber.iin == number) | (Subscriber.bin == number))
                .order_by(Mailbox.id)
            )
            return [_record(m) for m in (await s.execute(q)).scalars()]

    async def list(self, state: str | None = None, limit: int = 1000, offset: int = 0) -> list[MailboxRecord]:
        async with self.sessions() as s:
            q = select(Mailbox).order_by(Mailbox.id).limit(limit).offset(offset)
            if state:
                q = q.where(Mailbox.state == state)
            return [_record(m) for m in (await s.execute(q)).scalars()]

    async def count_by(self) -> dict[tuple[str, str], int]:
        async with self.sessions() as s:
            rows = await s.execute(
                select(Mailbox.kind, Mailbox.state, func.count()).group_by(Mailbox.kind, Mailbox.state)
            )
            return {(k, st): n for k, st, n in rows}

    # -- writes ------------------------------------------------------------------------
    async def add_mailbox(
        self,
        s: AsyncSession,
        login: str,
        password_hash: str,
        *,
        kind: str = "personal",
        subscriber_id: int | None = None,
        owner_key: str | None = None,
        quota_bytes: int | None = None,
        state: str = "active",
    ) -> Mailbox:
        """Insert inside the caller's transaction; LoginTaken on any uniqueness clash."""
        norm = normalize_login(login)
        await lock_local_name(s, norm)
        if (await s.execute(select(Alias.id).where(Alias.name_norm == norm))).first() is not None:
            raise LoginTaken(login)  # an alias (current or removed) owns this name for good
        m = Mailbox(
            login=login,
            login_norm=norm,
            address=f"{login}@{self.domain}",
            address_norm=f"{norm}@{self.domain}",
            kind=kind,
            subscriber_id=subscriber_id,
            owner_key=owner_key,
            quota_bytes=quota_bytes,
            password_hash=password_hash,
            state=state,
        )
        s.add(m)
        try:
            await s.flush()
        except IntegrityError as exc:
            text = str(exc.orig).lower()
            if "owner_key" in text:
                raise OwnerKeyTaken(login) from None  # caller maps to "already has a mailbox"
            raise LoginTaken(login) from None
        return m

    async def create_mailbox(self, login: str, password_hash: str, **kw: Any) -> MailboxRecord:
        actor = kw.pop("actor", ("sysadmin", "cli"))
        async with self.transaction() as s:
            m = await self.add_mailbox(s, login, password_hash, **kw)
            s.add(
                AuditEvent(
                    actor_kind=actor[0],
                    actor_id=actor[1],
                    action="mailbox.create",
                    target=m.address,
                    outcome="ok",
                    detail={"kind": m.kind},
                )
            )
        return _record(m)

    async def set_password_hash(self, mailbox_id: int, new_hash: str, *, rehash: bool = False) -> None:
        async with self.transaction() as s:
            values: dict[str, Any] = {"password_hash": new_hash}
            if not rehash:
                values["password_changed_at"] = utcnow()
            await s.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(**values))

    async def set_state(self, username: str, state: str, *, actor: tuple[str, str],
                        reason: str | None = None) -> MailboxRecord:
        key = self.login_of(username)
        async with self.transaction() as s:
            m = (await s.execute(select(Mailbox).where(Mailbox.login_norm == key))).scalar_one_or_none()
            if m is None:
                raise NotFound(username)
            if m.state == "closed":
                raise NotFound(f"{username} is closed")
            old = m.state
            m.state = state
            if state == "closed":
                m.closed_at = utcnow()
            s.add(
                AuditEvent(
                    actor_kind=actor[0],
                    actor_id=actor[1],
                    action=f"mailbox.{state}",
                    target=m.address,
                    outcome="ok",
                    detail={"from": old, "reason": reason} if reason else {"from": old},
                )
            )
            await s.flush()
            return _record(m)

    async def subscriber(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber record (data on file) of a mailbox, detached from the session."""
        async with self.readers() as s:
            return await s.get(Subscriber, subscriber_id)

    async def audit(
        self, actor_kind: str, actor_id: str, action: str, target: str, outcome: str = "ok", **detail: Any
    ) -> None:
        async with self.transaction() as s:
            s.add(
                AuditEvent(
                    actor_kind=actor_kind,
                    actor_id=actor_id,
                    action=action,
                    target=target,
                    outcome=outcome,
                    detail=detail,
                )
            )

    async def audit_list(
        self, limit: int = 100, target: str | None = None, action: str | None = None
    ) -> builtins.list[AuditEvent]:
        async with self.sessions() as s:
            q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if target:
                q = q.where(AuditEvent.target == target)
            if action:
                q = q.where(AuditEvent.action.like(action.replace("*", "%")))
            return list((await s.execute(q)).scalars())

    # -- failed-login counters (shared by every process using this database) -------------
    async def failures(self, keys: builtins.list[str]) -> dict[str, AuthFailure]:
        async with self.readers() as s:
            rows = (await s.execute(select(AuthFailure).where(AuthFailure.key.in_(keys)))).scalars()
            return {r.key: r for r in rows}

    async def record_failure(self, keys: builtins.list[str], threshold: int, lock_seconds: int) -> None:
        now = utcnow()
        async with self.transaction() as s:
            for key in keys:
                row = await s.get(AuthFailure, key)
                if row is None:
                    row = AuthFailure(key=key, count=0, first_at=now)
                    s.add(row)
                row.count += 1
                if row.count >= threshold:
                    row.locked_until = now + dt.timedelta(seconds=lock_seconds * (row.count // threshold))

    async def clear_failures(self, keys: builtins.list[str]) -> None:
        from sqlalchemy import delete

        async with self.transaction() as s:
            await s.execute(delete(AuthFailure).where(AuthFailure.key.in_(keys)))
