"""The staff console registers a paper application and tells a suspended holder (issue 19, item 4).

The real web application over the real services (``app.build``: SQLite directory, Maildir
store, local delivery) driven by httpx through ASGI (no sockets); staff sign in with their
password and a current TOTP code, as in the browser.

* an employee registers an individual: the mailbox exists, the audit event names the
  employee and the office, the page shows the address and the printable application;
* a bad IIN is shown under the IIN field, in Russian, and nothing is written;
* an auditor gets 403 (audited); a form without the CSRF token is refused;
* a supervisor suspending from the console sends the "suspended" notice to the INBOX.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyotp

from tests.conftest import migrate_directory, write_config

STAFF_PASSWORD = "a long staff password"
FORM = {
    "kind": "individual", "surname": "Ахметова", "given_name": "Әсем", "iin": "850525400017",
    "id_document.type": "id_card", "id_document.number": "041234567", "id_document.issuer": "МВД РК",
    "id_document.issue_date": "2018-03-01", "residence_address.region": "Алматинская область",
    "residence_address.locality": "Қонаев", "residence_address.street": "ул. Абая",
    "residence_address.house": "12", "residence_address.postcode": "B01P3K4",
    "mobile_phone": "+7 701 123 45 67", "username": "asem", "language": "ru", "accept_agreement": "2026-1",
}  # fmt: skip
LEGAL = {
    "kind": "legal_entity", "name": "ТОО «Ромашка»", "bin": "150340001236", "registration.number": "12345-1910-ТОО",
    "registration.date": "2015-03-10", "legal_address.locality": "Астана", "legal_address.street": "пр. Мәңгілік Ел",
    "legal_address.house": "55", "legal_address.postcode": "010000", "actual_address.locality": "Астана",
    "actual_address.street": "ул. Кенесары", "actual_address.house": "7", "actual_address.postcode": "010000",
    "work_phone": "+7 7172 55 55 55", "mobile_phone": "+7 777 000 11 22", "username": "romashka",
    "accept_agreement": "2026-1", "office": "AST02",
}  # fmt: skip


class Console:
    def __init__(self, svc: Any, client: httpx.AsyncClient, secrets: dict[str, str]) -> None:
        self.svc, self.client, self.secrets = svc, client, secrets

    async def csrf(self, path: str) -> str:
        page = await self.client.get(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text
        return found.group(1)

    async def login(self, username: str) -> None:
        self.client.cookies.clear()
        token = await self.csrf("/staff/login")
        r = await self.client.post("/staff/login", data={
            "csrf_token": token, "username": username, "password": STAFF_PASSWORD,
            "totp": pyotp.TOTP(self.secrets[username]).now()})
        assert r.status_code == 303 and r.headers["location"] == "/staff", r.text

    async def audit(self, action: str) -> list[Any]:
        return [e for e in await self.svc.directory.audit_list(limit=50) if e.action == action]


def run(tmp_path: Path, body: Callable[[Console], Awaitable[None]]) -> None:
    from esam_mail import app, config
    from esam_mail.web.server import build_app
    from esam_mail.web.staff import staff_service

    cfg = config.load(write_config(tmp_path, registration={"registry_policy": "accept"}))
    migrate_directory(cfg.directory_url)

    async def go() -> None:
        svc = app.build(cfg)
        try:
            staff = staff_service(svc)
            secrets = {}
            for name, role, office in (("e-17", "employee", "ALA01"), ("super", "supervisor", "ALA01"),
                                       ("aud", "auditor", None)):
                _, secrets[name] = await staff.add(name, f"Staff {name}", role, STAFF_PASSWORD,
                                                   office_code=office, actor=("sysadmin", "test"))
            transport = httpx.ASGITransport(app=build_app(svc))
            async with httpx.AsyncClient(transport=transport, base_url="http://esam.test",
                                         headers={"accept-language": "ru"}) as client:
                await body(Console(svc, client, secrets))
        finally:
            await svc.close()

    asyncio.run(go())


def test_employee_registers_a_paper_application(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("e-17")
        page = await c.client.get("/staff/register")
        assert page.status_code == 200 and 'name="iin"' in page.text and 'id="nav-register"' in page.text
        token = await c.csrf("/staff/register")
        r = await c.client.post("/staff/register", data={**FORM, "office": "AST02", "csrf_token": token})
        assert r.status_code == 200, r.text
        assert 'id="new-address">asem@esam.test<' in r.text
        assert 'href="/staff/mailbox/asem/application.pdf"' in r.text
        m = await c.svc.directory.get("asem")
        assert m is not None and m.state == "active"
        assert (c.svc.cfg.store_path / m.login_norm / "new").is_dir()
        [ev] = await c.audit("mailbox.register")
        assert (ev.actor_kind, ev.actor_id) == ("employee", "e-17")
        assert ev.detail["office"] == "ALA01" and ev.detail["channel"] == "office"  # their own office, not AST02
        pdf = await c.client.get("/staff/mailbox/asem/application.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

        # a supervisor names the office; the legal-entity form has the CLI's fields too
        await c.login("super")
        token = await c.csrf("/staff/register?kind=legal_entity")
        r = await c.client.post("/staff/register", data={**LEGAL, "csrf_token": token})
        assert r.status_code == 200 and 'id="new-address">romashka@esam.test<' in r.text, r.text
        ev = next(e for e in await c.audit("mailbox.register") if e.target == "romashka@esam.test")
        assert (ev.actor_id, ev.detail["office"], ev.detail["kind"]) == ("super", "AST02", "legal_entity")

    run(tmp_path, body)


def test_bad_iin_is_shown_under_its_field_and_nothing_is_written(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("e-17")
        token = await c.csrf("/staff/register")
        r = await c.client.post("/staff/register", data={**FORM, "iin": "850525400018", "csrf_token": token})
        assert r.status_code == 400
        error = re.search(r'id="iin-error" role="alert">([^<]+)</strong>\s*<input type="text" name="iin"', r.text)
        assert error, r.text
        assert html.unescape(error.group(1)) == "ИИН недействителен: не совпадает контрольная цифра."
        assert 'value="Ахметова"' in r.text  # what was typed stays
        assert await c.svc.directory.get("asem") is None
        assert await c.audit("mailbox.register") == []
        assert not (c.svc.cfg.store_path / "asem").exists()

    run(tmp_path, body)


def test_role_without_the_right_gets_403_and_csrf_is_required(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("aud")
        assert (await c.client.get("/staff/register")).status_code == 403
        token = await c.csrf("/staff")
        r = await c.client.post("/staff/register", data={**FORM, "csrf_token": token})
        assert r.status_code == 403
        assert [e.outcome for e in await c.audit("application.register")] == ["denied", "denied"]

        await c.login("e-17")
        r = await c.client.post("/staff/register", data=FORM)  # no token
        assert r.status_code == 403
        r = await c.client.post("/staff/register", data={**FORM, "csrf_token": "x" * 43})
        assert r.status_code == 403
        assert await c.svc.directory.get("asem") is None

    run(tmp_path, body)


def test_suspending_from_the_console_sends_the_notice(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("e-17")
        token = await c.csrf("/staff/register")
        assert (await c.client.post("/staff/register", data={**FORM, "csrf_token": token})).status_code == 200
        await c.login("super")
        token = await c.csrf("/staff/mailbox/asem")
        r = await c.client.post("/staff/mailbox/asem/state",
                                data={"csrf_token": token, "action": "suspend", "reason": "рассылка спама"})
        assert r.status_code == 303
        m = await c.svc.directory.get("asem")
        assert m is not None and m.state == "suspended"
        got = {}
        for f in (c.svc.cfg.store_path / m.login_norm / "new").iterdir():
            msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            got[str(msg["X-Esam-Notice"])] = msg
        assert set(got) == {"welcome", "suspended"}
        suspended = got["suspended"]
        assert suspended["Content-Language"] == "ru"
        assert "Причина: рассылка спама" in suspended.get_content()  # type: ignore[attr-defined]

    run(tmp_path, body)


def test_legal_entity_signer_role_and_power_of_attorney(tmp_path: Path) -> None:
    """Issue 18 item 4: the paper form has the CLI's --signer-role/--poa-number/--poa-date too."""

    async def body(c: Console) -> None:
        await c.login("super")
        token = await c.csrf("/staff/register?kind=legal_entity")
        page = (await c.client.get("/staff/register?kind=legal_entity")).text
        assert 'name="signer_role"' in page and 'name="poa_number"' in page and 'name="poa_date"' in page
        rep = {**LEGAL, "signer_role": "representative", "csrf_token": token}
        r = await c.client.post("/staff/register", data=rep)
        assert r.status_code == 400
        assert 'id="poa_number-error"' in r.text and 'id="poa_date-error"' in r.text, r.text
        assert await c.svc.directory.get("romashka") is None
        token = await c.csrf("/staff/register?kind=legal_entity")
        r = await c.client.post("/staff/register", data={**rep, "poa_number": "Д-17", "poa_date": "2026-01-15",
                                                         "csrf_token": token})
        assert r.status_code == 200 and 'id="new-address">romashka@esam.test<' in r.text, r.text

    run(tmp_path, body)
