"""Staff accounts, roles and the CLI's audit actors.

* a staff member whose role does not allow an action is refused (service and CLI);
* sign-in needs the password AND a current TOTP code;
* the CLI records the OS user, and refuses a free-text ``--actor`` from a non-administrator;
* ``--employee`` must be a staff account allowed to register at that office.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pyotp
import pytest

from esam_mail.cli import main
from tests.conftest import add_staff, migrate_directory, write_config
from tests.unit.registration.test_cli import FLAGS


class Cli:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        from esam_mail import config

        self.config = write_config(tmp, registration={"registry_policy": "accept"})
        self.cfg = config.load(self.config)
        migrate_directory(self.cfg.directory_url)
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def as_user(self, name: str, uid: int) -> None:
        self.monkeypatch.setattr("esam_mail.cli._actor.os.geteuid", lambda: uid)
        self.monkeypatch.setattr("esam_mail.cli._actor.os_user", lambda: name)

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        rc = main(["-c", str(self.config), *args])
        out = self.capsys.readouterr()
        return rc, out.out, out.err

    def audit(self) -> list[dict[str, Any]]:
        rc, out, _ = self("audit", "list", "--json")
        assert rc == 0
        return list(json.loads(out))


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)


def _service(cfg: Any) -> Any:
    from esam_mail.cli._actor import staff_service

    return staff_service(cfg)


def test_role_refusals_and_password_plus_totp(cli: Cli) -> None:
    from esam_mail.errors import AuthError, ValidationError
    from esam_mail.services.accounts.staff import RoleRefused, StaffService

    async def go() -> None:
        svc = _service(cli.cfg)
        try:
            clerk, secret = await svc.add("clerk", "Clerk", "employee", "a long staff password",
                                          office_code="ALA01", actor=("sysadmin", "t"))
            auditor, _ = await svc.add("aud", "Auditor", "auditor", "a long staff password", actor=("sysadmin", "t"))
            StaffService.require(clerk, "application.register", office_code="ALA01")
            with pytest.raises(RoleRefused, match="works at office ALA01, not AST02"):
                StaffService.require(clerk, "application.register", office_code="AST02")
            with pytest.raises(RoleRefused, match=r"role .employee. of clerk may not do mailbox\.state"):
                StaffService.require(clerk, "mailbox.state")
            with pytest.raises(RoleRefused, match=r"may not do application\.register"):
                StaffService.require(auditor, "application.register")
            StaffService.require(auditor, "audit.read")
            with pytest.raises(ValidationError, match="office"):
                await svc.add("x", "X", "employee", "a long staff password", actor=("sysadmin", "t"))

            code = pyotp.TOTP(secret).now()
            ok = await svc.authenticate("clerk", "a long staff password", code)
            assert ok.username == "clerk"
            for pw, otp in (("a long staff password", "000000" if code != "000000" else "111111"),
                            ("wrong password!!", code), ("a long staff password", "")):
                with pytest.raises(AuthError):
                    await svc.authenticate("clerk", pw, otp)
            await svc.set_state("clerk", False, actor=("sysadmin", "t"))
            with pytest.raises(AuthError):
                await svc.authenticate("clerk", "a long staff password", code)
            disabled = await svc.get("clerk")
            with pytest.raises(RoleRefused, match="disabled"):
                StaffService.require(disabled, "application.register", office_code="ALA01")
        finally:
            await svc.directory.close()

    asyncio.run(go())


def test_cli_records_the_os_user_and_refuses_free_text_actor_from_a_non_administrator(cli: Cli) -> None:
    rc, _, _ = cli("mailbox", "add", "alice", "--password-stdin", stdin="correct horse battery\n")
    assert rc == 0
    cli.as_user("clerk", 1000)
    rc, _, err = cli("mailbox", "suspend", "alice", "--actor", "nonsense")
    assert rc == 2 and "actor: only an administrator may name another actor; you are recorded as os:clerk" in err
    rc, _, _ = cli("mailbox", "suspend", "alice")
    assert rc == 0
    assert cli.audit()[0]["action"] == "mailbox.suspended" and cli.audit()[0]["actor"] == "os:clerk"

    # the OS user bound to a staff account is recorded as that account, with its office
    add_staff(cli.cfg.directory_url, "super1", "supervisor", "ALA01")
    asyncio.run(_bind(cli.cfg, "super1", "clerk"))
    rc, _, _ = cli("mailbox", "resume", "alice")
    assert rc == 0 and cli.audit()[0]["actor"] == "staff:super1@ALA01/os=clerk"

    # an administrator may name the actor; the OS user stays beside it; junk is refused
    cli.as_user("root", 0)
    rc, _, err = cli("mailbox", "suspend", "alice", "--actor", "nonsense")
    assert rc == 2 and "KIND:ID" in err
    rc, _, _ = cli("mailbox", "suspend", "alice", "--actor", "employee:e-20")
    assert rc == 0 and cli.audit()[0]["actor"] == "employee:e-20/os=root"


async def _bind(cfg: Any, username: str, os_user: str) -> None:
    svc = _service(cfg)
    try:
        await svc.tables.change(username, actor=("sysadmin", "t"), action="staff.bind", os_user=os_user)
    finally:
        await svc.directory.close()


def test_employee_must_be_a_staff_account_whose_role_and_office_allow_registering(cli: Cli) -> None:
    add_staff(cli.cfg.directory_url, "e-17", "employee", "ALA01")
    add_staff(cli.cfg.directory_url, "aud", "auditor", None)
    add_staff(cli.cfg.directory_url, "sup", "supervisor", None)
    base = ["register", "individual", *FLAGS, "--accept-agreement", "2026-1", "--password-stdin"]
    pw = "correct horse battery\n"
    for employee, office, says in (
        ("nobody", "ALA01", "employee: no staff account 'nobody'"),
        ("aud", "ALA01", "employee: role 'auditor' of aud may not do application.register"),
        ("e-17", "AST02", "employee: e-17 works at office ALA01, not AST02"),
    ):
        rc, _, err = cli(*base, "--office", office, "--employee", employee, stdin=pw)
        assert rc == 2 and says in err, err
    rc, _, _ = cli("mailbox", "list")
    assert cli.audit()[0]["outcome"] == "denied"  # the refusal is audited
    rc, out, err = cli(*base, "--office", "AST02", "--employee", "sup", "--json", stdin=pw)
    assert rc == 0, err  # a supervisor registers at any office
    assert json.loads(out)["address"] == "asem@esam.test"


def test_staff_cli_add_list_role_and_admin_only(cli: Cli) -> None:
    rc, out, err = cli("staff", "add", "e-9", "--name", "Ерлан", "--role", "employee", "--office", "ALA01",
                       "--password-stdin", "--json", stdin="a long staff password\n")
    assert rc == 0, err
    data = json.loads(out)
    assert data["totp_uri"].startswith("otpauth://totp/") and len(data["totp_secret"]) >= 16
    rc, out, _ = cli("staff", "list", "--json")
    assert [s["username"] for s in json.loads(out)] == ["e-9"]
    rc, _, err = cli("staff", "role", "e-9", "employee", "--office", "")
    assert rc == 2 and "office" in err
    cli.as_user("clerk", 1000)
    rc, _, err = cli("staff", "add", "e-10", "--name", "X", "--role", "admin", "--password-stdin",
                     stdin="a long staff password\n")
    assert rc == 2 and "only an administrator" in err
