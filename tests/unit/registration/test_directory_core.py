"""The directory's guarantees on both databases (design R4, R8; rules para. 4, 10, 11).

* the normalised login and address are unique, case-insensitively, for ever
  (closed mailboxes included), and the database itself says so;
* one open mailbox per owner key (the IIN), closed ones excluded;
* ``audit_events`` is append-only: the database refuses UPDATE and DELETE.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from esam_mail.directory.sql import OwnerKeyTaken
from esam_mail.errors import LoginTaken, NotFound
from tests.unit.registration.conftest import Env


def test_login_unique_case_insensitively(env: Env) -> None:
    d = env.directory
    rec = env.run(d.create_mailbox("Alice", "x"))
    assert (rec.login_norm, rec.address) == ("alice", "Alice@esam.test")
    for other in ("alice", "ALICE", " aLiCe "):
        with pytest.raises(LoginTaken):
            env.run(d.create_mailbox(other, "x"))
    assert env.run(d.get("ALICE@ESAM.TEST")).id == rec.id
    assert env.run(d.by_address("alice@esam.test")).id == rec.id


def test_uniqueness_is_a_database_constraint(env: Env) -> None:
    env.run(env.directory.create_mailbox("bob", "x"))

    async def raw_insert() -> None:
        async with env.directory.transaction() as s:
            await s.execute(
                text(
                    "INSERT INTO mailboxes (login, login_norm, address, address_norm, kind, state, "
                    "created_at, password_hash, password_changed_at, eds_confirmed) VALUES "
                    "('BOB', 'bob', 'BOB@esam.test', 'bob2@esam.test', 'personal', 'active', "
                    "CURRENT_TIMESTAMP, 'x', CURRENT_TIMESTAMP, false)"
                )
            )

    with pytest.raises(IntegrityError):
        env.run(raw_insert())


def test_closed_login_stays_taken(env: Env) -> None:
    d = env.directory
    env.run(d.create_mailbox("carol", "x"))
    closed = env.run(d.set_state("carol", "closed", actor=("sysadmin", "t")))
    assert closed.state == "closed" and not closed.open
    with pytest.raises(LoginTaken):
        env.run(d.create_mailbox("Carol", "x"))
    with pytest.raises(NotFound):
        env.run(d.set_state("carol", "active", actor=("sysadmin", "t")))
    assert env.run(d.get("carol")).state == "closed"


def test_one_open_mailbox_per_owner_key(env: Env) -> None:
    d = env.directory
    env.run(d.create_mailbox("dana", "x", owner_key="850525400017"))
    with pytest.raises(OwnerKeyTaken):
        env.run(d.create_mailbox("dana2", "x", owner_key="850525400017"))
    # many mailboxes without an owner key are fine
    env.run(d.create_mailbox("svc1", "x", kind="service"))
    env.run(d.create_mailbox("svc2", "x", kind="service"))
    env.run(d.set_state("dana", "closed", actor=("sysadmin", "t")))
    assert env.run(d.create_mailbox("dana2", "x", owner_key="850525400017")).state == "active"


def test_audit_is_append_only(env: Env) -> None:
    d = env.directory
    env.run(d.audit("sysadmin", "t", "mailbox.passwd", "x@esam.test"))
    env.run(d.create_mailbox("erin", "x", actor=("employee", "e-5")))
    events = env.run(d.audit_list())
    assert [(e.actor_kind, e.action) for e in events] == [
        ("employee", "mailbox.create"),
        ("sysadmin", "mailbox.passwd"),
    ]

    async def tamper(sql: str) -> None:
        async with d.transaction() as s:
            await s.execute(text(sql))

    for sql in ("UPDATE audit_events SET actor_id = 'nobody'", "DELETE FROM audit_events WHERE id > 0"):
        with pytest.raises(DBAPIError, match="append-only"):
            env.run(tamper(sql))
    assert len(env.run(d.audit_list())) == 2
