"""``/account/security``: two-step login (TOTP) and app passwords; ``/account/login/code``:
the second step of a login when TOTP is on.

After the password, a mailbox with TOTP gets a *pending* session (no access yet, five
minutes to enter a code); a right code (or an unused recovery code) rotates the session
into a logged-in one.  Turning TOTP on: the secret lives in the session until one code
proves the authenticator app has it; then ten recovery codes are shown once.  App
passwords are shown once too; IMAP and SMTP accept only them while TOTP is on.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import RedirectResponse

from esam_mail.errors import AuthError
from esam_mail.services.accounts.second_factor import SecondFactorService
from esam_mail.web.account import account_service, current_profile, start_session
from esam_mail.web.i18n import translator
from esam_mail.web.security import read_form
from esam_mail.web.server import Request, Response, Router, peer
from esam_mail.web.templating import render

__all__ = ["PENDING_SECONDS", "register", "second_factor"]

PENDING_SECONDS = 300


def second_factor(services: Any) -> SecondFactorService:
    sf = getattr(services.authenticator, "second_factor", None)
    if sf is None:
        sf = services.extras.get("second_factor")
        if sf is None:
            cfg = services.cfg
            sf = services.extras["second_factor"] = SecondFactorService(
                services.directory, max_failures=cfg.auth.max_failures, lock_seconds=cfg.auth.lock_seconds)
    return sf


def _qr(uri: str) -> str | None:
    try:
        import segno
    except ImportError:  # the secret is shown as text anyway
        return None
    return str(segno.make(uri, error="m").svg_data_uri(scale=4))


def register(router: Router, services: Any) -> None:
    accounts = account_service(services)

    def to_login() -> Response:
        return RedirectResponse("/account/login", status_code=303)

    async def pending_profile(request: Request) -> Any:
        login = request.session.get("pending")
        at = request.session.get("pending_at")
        if not isinstance(login, str) or not isinstance(at, int) or time.time() - at > PENDING_SECONDS:
            return None
        profile = await accounts.profile(login)
        if profile is None or profile.fingerprint != request.session.get("pending_fp"):
            return None
        return profile

    async def code_page(request: Request) -> Response:
        if await pending_profile(request) is None:
            return to_login()
        return render(request, "account_code.html", {"errors": {}})

    async def code(request: Request) -> Response:
        profile = await pending_profile(request)
        if profile is None:
            request.session.clear()
            return to_login()
        form = await read_form(request)
        _ = translator(request)
        sf = second_factor(services)
        text = str(form.get("code", ""))[:64]
        if not text.strip():
            errors = {"code": _("Enter the code from your authenticator app or a recovery code.")}
        elif await sf.verify(profile.id, profile.login, text):
            await services.directory.audit("subscriber", profile.login, "account.login", profile.address,
                                           peer=peer(request), service="web", second_factor=True)
            start_session(request, profile)
            return RedirectResponse("/account", status_code=303)
        elif await sf.locked(profile.login):
            errors = {"code": _("Too many failed attempts. Wait a few minutes and try again.")}
        else:
            errors = {"code": _("The code is wrong or has already been used.")}
        return render(request, "account_code.html", {"errors": errors}, status=400)

    async def page(request: Request, profile: Any, extra: dict[str, Any] | None = None,
                   status: int = 200) -> Response:
        sf = second_factor(services)
        on = await sf.enabled(profile.id)
        ctx: dict[str, Any] = {"profile": profile, "on": on, "errors": {}, "setup": None, "qr": None,
                               "codes": None, "new_app": None, "apps": [], "left": 0}
        if on:
            ctx["apps"] = await sf.app_passwords(profile.id)
            ctx["left"] = await sf.recovery_left(profile.id)
        else:
            secret = request.session.get("totp_setup")
            if isinstance(secret, str):
                uri = sf.provisioning_uri(secret, profile.address)
                ctx.update(setup=secret, qr=_qr(uri), uri=uri)
        ctx.update(extra or {})
        return render(request, "account_security.html", ctx, status=status)

    async def security(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        return await page(request, profile)

    async def start(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        await read_form(request)
        request.session["totp_setup"] = second_factor(services).new_secret()
        return RedirectResponse("/account/security", status_code=303)

    async def enable(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        form = await read_form(request)
        secret = request.session.get("totp_setup")
        if not isinstance(secret, str):
            return RedirectResponse("/account/security", status_code=303)
        codes = await second_factor(services).enable(profile.id, secret, str(form.get("code", ""))[:16])
        if codes is None:
            _ = translator(request)
            return await page(request, profile, {"errors": {"code": _("The code is wrong or has already been used.")}},
                              status=400)
        request.session.pop("totp_setup", None)
        services.authenticator.forget(profile.login)  # a cached main password must not open IMAP now
        await services.directory.audit("subscriber", profile.login, "account.totp_on", profile.address,
                                       peer=peer(request))
        return await page(request, profile, {"codes": codes})

    async def disable(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        form = await read_form(request)
        _ = translator(request)
        errors: dict[str, str] = {}
        try:
            await services.authenticator.authenticate(profile.login, str(form.get("password", "")),
                                                      peer=peer(request), service="web")
        except AuthError:
            errors["password"] = _("The password is wrong.")
        if not errors and not await second_factor(services).verify(profile.id, profile.login,
                                                                   str(form.get("code", ""))[:64]):
            errors["code"] = _("The code is wrong or has already been used.")
        if errors:
            return await page(request, profile, {"errors": errors}, status=400)
        await second_factor(services).disable(profile.id)
        await services.directory.audit("subscriber", profile.login, "account.totp_off", profile.address,
                                       peer=peer(request))
        return RedirectResponse("/account/security", status_code=303)

    async def add_app(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        form = await read_form(request)
        name = " ".join(str(form.get("name", "")).split())[:64]
        sf = second_factor(services)
        if not await sf.enabled(profile.id):
            return RedirectResponse("/account/security", status_code=303)
        if not name:
            _ = translator(request)
            return await page(request, profile, {"errors": {"name": _("Name the program, for example: Thunderbird at home.")}},
                              status=400)
        created = await sf.create_app_password(profile.id, name)
        await services.directory.audit("subscriber", profile.login, "account.app_password", profile.address,
                                       peer=peer(request), name=name)
        return await page(request, profile, {"new_app": created})

    async def delete_app(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        await read_form(request)
        try:
            app_id = int(request.path_params["app_id"])
        except ValueError:
            app_id = -1
        await second_factor(services).delete_app_password(profile.id, app_id)
        services.authenticator.forget(profile.login)
        return RedirectResponse("/account/security", status_code=303)

    router.add("GET", "/account/login/code", code_page)
    router.add("POST", "/account/login/code", code)
    router.add("GET", "/account/security", security)
    router.add("POST", "/account/security/totp/start", start)
    router.add("POST", "/account/security/totp/enable", enable)
    router.add("POST", "/account/security/totp/disable", disable)
    router.add("POST", "/account/security/app-passwords", add_app)
    router.add("POST", "/account/security/app-passwords/{app_id}/delete", delete_app)
