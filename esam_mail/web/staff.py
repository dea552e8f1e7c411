"""``/staff``: the staff console (post offices and the operator's back office).

Staff sign in with their password **and** a TOTP code (``esam staff add`` gives the
secret).  Every page checks the role (:data:`esam_mail.services.accounts.staff.PERMISSIONS`) of
the signed-in account; what a role may not do is neither shown nor accepted (403 and a
denied audit event when it is posted anyway).  Every action is audited as
``staff:<username>@<office>``.

Pages: search (IIN, BIN, login or address, holder name, hybrid tracking number), a
mailbox (state, EDS status; suspend / resume / close with a reason: the holder gets the
suspended / closed notice as from the CLI), a paper application (``staff_register.py``), the audit log
(auditor, supervisor, administrator).  No page shows message content.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse

from esam_mail.errors import AuthError, EsamError, NotFound, ValidationError
from esam_mail.services.accounts.notices import NoticeKind, Notices
from esam_mail.services.accounts.staff import PERMISSIONS, RoleRefused, StaffRecord, StaffService
from esam_mail.web.i18n import translator
from esam_mail.web.security import new_csrf, read_form
from esam_mail.web.server import Request, Response, Router
from esam_mail.web.templating import render

__all__ = ["register"]

ABSOLUTE = 8 * 3600  # a working day
_TRACKING = re.compile(r"^[A-Z]{2}\d{9}[A-Z]{2}$")
STATES = {"suspend": "suspended", "resume": "active", "close": "closed"}
NOTICES = {"suspend": NoticeKind.SUSPENDED, "close": NoticeKind.CLOSED}


def staff_service(services: Any) -> StaffService:
    svc = services.extras.get("staff")
    if svc is None:
        auth = services.authenticator  # None in a web app built without logins (tests)
        svc = services.extras["staff"] = StaffService(
            services.directory, lambda pw: services.hasher.hash(pw),
            lambda pw, stored: services.hasher.verify(pw, stored)[0],
            forget_login=auth.forget if auth is not None else None)
    return svc


async def signed_in(staff: StaffService, request: Request) -> StaffRecord | None:
    """The staff account signed in on this session (None: sign in again)."""
    name = request.session.get("staff")
    at = request.session.get("staff_at")
    if not isinstance(name, str) or not isinstance(at, int | float) or time.time() - at > ABSOLUTE:
        return None
    rec = await staff.get(name)
    if rec is None or not rec.active:
        request.session.clear()
        return None
    return rec


def register(router: Router, services: Any) -> None:
    staff = staff_service(services)

    async def current(request: Request) -> StaffRecord | None:
        return await signed_in(staff, request)

    def can(rec: StaffRecord, action: str) -> bool:
        return rec.active and rec.role in PERMISSIONS.get(action, frozenset())

    def page(request: Request, name: str, rec: StaffRecord, ctx: dict[str, Any], status: int = 200) -> Response:
        return render(request, name, {"staff": rec, "can": lambda a: can(rec, a), **ctx}, status=status)

    def to_login() -> Response:
        return RedirectResponse("/staff/login", status_code=303)

    async def login_page(request: Request) -> Response:
        return render(request, "staff_login.html", {"errors": {}, "username": ""})

    async def login(request: Request) -> Response:
        form = await read_form(request)
        username = str(form.get("username", "")).strip()[:64]
        password = str(form.get("password", ""))[:1024]
        code = str(form.get("totp", "")).strip()[:10]
        _ = translator(request)
        try:
            rec = await staff.authenticate(username, password, code)
        except AuthError:
            return render(request, "staff_login.html", {
                "errors": {"totp": _("The user name, the password or the code is wrong.")}, "username": username,
            }, status=400)
        lang = request.session.get("lang")
        request.session.clear()
        request.session.update({"staff": rec.username, "staff_at": int(time.time()),
                                "sid": secrets.token_urlsafe(16)})
        if lang:
            request.session["lang"] = lang
        new_csrf(request)
        return RedirectResponse("/staff", status_code=303)

    async def logout(request: Request) -> Response:
        await read_form(request)
        request.session.clear()
        return to_login()

    async def home(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        q = request.query_params.get("q", "").strip()[:100]
        found: list[Any] = []
        tracking: list[Any] = []
        if q:
            found = await staff.search(rec, q)
            hybrid = services.extras.get("hybrid")
            if hybrid is not None and _TRACKING.match(q.upper()):
                try:
                    tracking = await asyncio.to_thread(hybrid.post.events.history, q.upper())
                except (ValueError, OSError):
                    tracking = []
        return page(request, "staff_home.html", rec, {"q": q, "found": found, "tracking": tracking})

    async def mailbox(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        staff.require(rec, "search")
        m = await services.directory.get(request.path_params["login"])
        if m is None:
            raise HTTPException(404)
        return page(request, "staff_mailbox.html", rec, {"m": m, "errors": {}, "done": request.query_params.get("done")})

    async def change_state(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        form = await read_form(request)
        login = request.path_params["login"]
        action = str(form.get("action", ""))
        if action not in STATES:
            raise HTTPException(400)
        try:
            changed = await staff.set_mailbox_state(rec, login, STATES[action], str(form.get("reason", ""))[:1000])
        except RoleRefused:
            raise HTTPException(403) from None
        except ValidationError as exc:
            m = await services.directory.get(login)
            if m is None:
                raise HTTPException(404) from None
            _ = translator(request)
            return page(request, "staff_mailbox.html", rec,
                        {"m": m, "errors": {exc.field: _("Say why.")}, "done": None}, status=400)
        kind = NOTICES.get(action)
        if kind is not None:  # as `esam mailbox suspend|close` does: tell the subscriber, in their language
            await Notices.from_services(services).send(kind, changed, reason=" ".join(str(form.get("reason", "")).split()))
        return RedirectResponse(f"/staff/mailbox/{login}?done={action}", status_code=303)

    async def application_pdf(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        try:
            app_id, pdf = await staff.application_form(rec, request.path_params["login"])
        except RoleRefused:
            raise HTTPException(403) from None
        except NotFound:
            raise HTTPException(404) from None
        return Response(pdf, media_type="application/pdf", headers={
            "content-disposition": f'inline; filename="application-{app_id}.pdf"', "cache-control": "no-store"})

    async def upload_scan(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        login = request.path_params["login"]
        form = await read_form(request, max_files=1, max_part_size=20 * 1024 * 1024)
        upload = form.get("scan")
        data = await upload.read() if upload is not None and hasattr(upload, "read") else b""
        try:
            await staff.attach_signed_scan(rec, login, data, services.cfg.data_dir / "applications")
        except RoleRefused:
            raise HTTPException(403) from None
        except NotFound:
            raise HTTPException(404) from None
        except ValidationError:
            m = await services.directory.get(login)
            _ = translator(request)
            return page(request, "staff_mailbox.html", rec,
                        {"m": m, "errors": {"scan": _("Choose the signed application as a PDF file.")},
                         "done": None}, status=400)
        return RedirectResponse(f"/staff/mailbox/{login}?done=scan", status_code=303)

    async def batches(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        hybrid = services.extras.get("hybrid")
        try:
            staff.require(rec, "hybrid.operate")
        except RoleRefused:
            raise HTTPException(403) from None
        if hybrid is None:
            raise HTTPException(404)
        rows = await asyncio.to_thread(hybrid.post.batches.list)
        return page(request, "staff_batches.html", rec, {"batches": rows, "done": request.query_params.get("done")})

    async def close_batch(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        await read_form(request)
        hybrid = services.extras.get("hybrid")
        try:
            staff.require(rec, "hybrid.operate")
        except RoleRefused:
            await services.directory.audit(*rec.actor, "hybrid.batch.close", request.path_params["batch"], "denied")
            raise HTTPException(403) from None
        if hybrid is None:
            raise HTTPException(404)
        batch = request.path_params["batch"]
        try:
            await asyncio.to_thread(hybrid.post.batches.close, batch)
        except (KeyError, ValueError, OSError, EsamError):
            raise HTTPException(409) from None
        await services.directory.audit(*rec.actor, "hybrid.batch.close", batch, "ok")
        return RedirectResponse("/staff/batches?done=1", status_code=303)

    async def audit(request: Request) -> Response:
        rec = await current(request)
        if rec is None:
            return to_login()
        try:
            staff.require(rec, "audit.read")
        except RoleRefused:
            await services.directory.audit(*rec.actor, "audit.read", "audit", "denied")
            raise HTTPException(403) from None
        target = request.query_params.get("target", "").strip()[:320] or None
        events = await services.directory.audit_list(limit=200, target=target)
        return page(request, "staff_audit.html", rec, {"events": events, "target": target or ""})

    router.add("GET", "/staff/login", login_page)
    router.add("POST", "/staff/login", login)
    router.add("POST", "/staff/logout", logout)
    router.add("GET", "/staff", home)
    router.add("GET", "/staff/mailbox/{login}", mailbox)
    router.add("POST", "/staff/mailbox/{login}/state", change_state)
    router.add("GET", "/staff/audit", audit)
    router.add("GET", "/staff/batches", batches)
    router.add("POST", "/staff/batches/{batch}/close", close_batch)
    router.add("GET", "/staff/mailbox/{login}/application.pdf", application_pdf)
    router.add("POST", "/staff/mailbox/{login}/application/scan", upload_scan)

