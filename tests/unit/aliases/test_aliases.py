"""Aliases in the directory, on SQLite and PostgreSQL: names shared with logins, never reused.

Also the ``esam alias`` CLI and ``esam init``'s role aliases (postmaster, abuse, hostmaster).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esam_mail.cli import main
from esam_mail.directory.aliases import AliasDirectory
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import LoginTaken, NotFound, ValidationError
from tests.conftest import write_config
from tests.unit.registration.conftest import db_url  # noqa: F401  (fixture: sqlite and postgres)

DOMAIN = "esam.test"


class Dir:
    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.d = SqlDirectory(url, domain=DOMAIN)
        self.aliases = AliasDirectory(self.d)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def mailbox(self, login: str) -> Any:
        return self.run(self.d.create_mailbox(login, "x"))

    def close(self) -> None:
        self.run(self.d.close())
        self.loop.close()


@pytest.fixture
def dir_(db_url: str) -> Iterator[Dir]:  # noqa: F811
    d = Dir(db_url)
    yield d
    d.close()


def test_add_resolve_list_remove(dir_: Dir) -> None:
    dir_.mailbox("alice")
    dir_.mailbox("bob")
    rec = dir_.run(dir_.aliases.add("Postmaster", ["alice", "BOB@esam.test", "Ops@Other.Test"]))
    assert rec.address == "Postmaster@esam.test" and rec.targets == ("alice", "bob", "ops@other.test")
    assert dir_.run(dir_.aliases.resolve("postmaster")) == ("alice", "bob", "ops@other.test")
    assert dir_.run(dir_.aliases.resolve("POSTMASTER")) == ("alice", "bob", "ops@other.test")
    # adding again merges, without duplicates
    assert dir_.run(dir_.aliases.add("postmaster@esam.test", ["alice"])).targets == ("alice", "bob", "ops@other.test")
    left = dir_.run(dir_.aliases.remove("postmaster", ["bob", "ops@other.test"]))
    assert left is not None and left.targets == ("alice",)
    assert [a.name for a in dir_.run(dir_.aliases.list_all())] == ["Postmaster"]
    assert dir_.run(dir_.aliases.remove("postmaster")) is None
    assert dir_.run(dir_.aliases.resolve("postmaster")) is None
    assert dir_.run(dir_.aliases.list_all()) == []
    with pytest.raises(NotFound):
        dir_.run(dir_.aliases.remove("postmaster"))
    # a removed alias can be created again (same name, still not a login)
    assert dir_.run(dir_.aliases.add("postmaster", ["bob"])).targets == ("bob",)


@pytest.mark.parametrize("state", ["active", "suspended", "closed"])
def test_an_alias_never_takes_an_issued_login(dir_: Dir, state: str) -> None:
    dir_.mailbox("carol")
    dir_.mailbox("alice")
    if state != "active":
        dir_.run(dir_.d.set_state("carol", state, actor=("sysadmin", "t")))
    with pytest.raises(ValidationError) as ei:
        dir_.run(dir_.aliases.add("Carol", ["alice"]))
    assert ei.value.field == "name" and "is a login" in ei.value.message
    assert dir_.run(dir_.aliases.resolve("carol")) is None


def test_a_login_is_never_issued_over_an_alias_even_a_removed_one(dir_: Dir) -> None:
    dir_.mailbox("alice")
    dir_.run(dir_.aliases.add("abuse", ["alice"]))
    with pytest.raises(LoginTaken):
        dir_.mailbox("Abuse")
    dir_.run(dir_.aliases.remove("abuse"))
    with pytest.raises(LoginTaken):
        dir_.mailbox("abuse")
    assert dir_.run(dir_.d.get("abuse")) is None


@pytest.mark.parametrize(("target", "needle"), [
    ("nobody", "no mailbox"),
    ("abuse", "is an alias"),
    ("not an address@other.test", "not an e-mail address"),
    ("gone", "closed"),
])
def test_bad_targets_are_refused_with_the_field(dir_: Dir, target: str, needle: str) -> None:
    dir_.mailbox("alice")
    dir_.mailbox("gone")
    dir_.run(dir_.d.set_state("gone", "closed", actor=("sysadmin", "t")))
    dir_.run(dir_.aliases.add("abuse", ["alice"]))
    with pytest.raises(ValidationError) as ei:
        dir_.run(dir_.aliases.add("security", [target]))
    assert ei.value.field == "target" and needle in ei.value.message
    assert dir_.run(dir_.aliases.resolve("security")) is None  # nothing half-written


@pytest.mark.parametrize("name", ["", "-x", "a b", "x@other.test", "é" * 3 + "!"])
def test_bad_names_are_refused(dir_: Dir, name: str) -> None:
    dir_.mailbox("alice")
    with pytest.raises(ValidationError) as ei:
        dir_.run(dir_.aliases.add(name, ["alice"]))
    assert ei.value.field == "name"


def test_concurrent_login_and_alias_for_one_name_never_both_win(db_url: str) -> None:  # noqa: F811
    """Two writers, two connections, the same new name: exactly one gets it."""

    async def race(i: int) -> list[str]:
        a = SqlDirectory(db_url, domain=DOMAIN)
        b = SqlDirectory(db_url, domain=DOMAIN)
        try:
            if i == 0:
                await a.create_mailbox("owner", "x")
            name = f"race{i}"

            async def as_login() -> str:
                try:
                    await a.create_mailbox(name, "x")
                    return "login"
                except LoginTaken:
                    return "-"

            async def as_alias() -> str:
                try:
                    await AliasDirectory(b).add(name, ["owner"])
                    return "alias"
                except ValidationError:
                    return "-"

            return list(await asyncio.gather(as_login(), as_alias()))
        finally:
            await a.close()
            await b.close()

    loop = asyncio.new_event_loop()
    try:
        for i in range(5):
            got = loop.run_until_complete(race(i))
            assert sorted(got) in (["-", "alias"], ["-", "login"]), got
    finally:
        loop.close()


# -- CLI --------------------------------------------------------------------------------------
class Cli:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.config = write_config(tmp)
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        rc = main(["-c", str(self.config), *args])
        out, err = self.capsys.readouterr()
        return rc, out, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)


def test_init_creates_the_operator_mailbox_and_role_aliases_idempotently(cli: Cli) -> None:
    rc, out, err = cli("init")
    assert rc == 0, err
    assert "created the operator mailbox operator@esam.test" in out
    for role in ("postmaster", "abuse", "hostmaster"):
        assert f"alias {role}@esam.test -> operator" in out
    rc, out, err = cli("alias", "list", "--json")
    assert rc == 0 and json.loads(out) == [
        {"name": r, "address": f"{r}@esam.test", "targets": ["operator"]} for r in ("abuse", "hostmaster", "postmaster")
    ]
    # the sysadmin points abuse@ elsewhere; a second init leaves that alone
    assert cli("mailbox", "add", "alice", "--password-stdin", stdin="Long-enough-Passw0rd\n")[0] == 0
    assert cli("alias", "add", "abuse", "alice")[0] == 0
    assert cli("alias", "remove", "abuse", "operator")[0] == 0
    rc, out, _ = cli("init")
    assert rc == 0 and "alias " not in out and "created the operator" not in out
    rc, out, _ = cli("alias", "list")
    assert "abuse@esam.test" in out and "-> alice" in out


def test_alias_cli_errors_name_the_field(cli: Cli) -> None:
    assert cli("init")[0] == 0
    rc, _, err = cli("alias", "add", "sales", "nobody")
    assert rc == 2 and err.startswith("esam: target: no mailbox 'nobody'"), err
    rc, _, err = cli("alias", "add", "operator", "operator")
    assert rc == 2 and err.startswith("esam: name: 'operator' is a login"), err
    rc, _, err = cli("mailbox", "add", "postmaster", "--password-stdin", stdin="Long-enough-Passw0rd\n")
    assert rc == 2 and "login taken: postmaster" in err, err
    rc, _, err = cli("alias", "remove", "sales")
    assert rc == 3 and "no alias sales@esam.test" in err, err


def test_a_fresh_init_with_its_operator_mailbox_still_counts_as_empty_for_restore(cli: Cli) -> None:
    """docs/sysadmin.md: restore into a fresh machine "or after `esam init`"."""
    from esam_mail import config
    from esam_mail.services.ops.backup import target_holds_data

    assert cli("init")[0] == 0
    cfg = config.load(cli.config)
    assert target_holds_data(cfg) == []
    new = cfg.store_path / "operator" / "new"
    new.mkdir(parents=True, exist_ok=True)
    (new / "1.msg").write_bytes(b"Subject: x\r\n\r\ny\r\n")
    assert target_holds_data(cfg) == ["1 mailboxes in the directory", f"mail in {cfg.store_path}"]
