"""``/account``: the subscriber's personal account.

Log in with the mailbox password (the authenticator's brute-force limits apply, shared
with IMAP and SMTP); on success the session is emptied and refilled (new session id and
CSRF token: a session planted before login is worth nothing after it).  The session keeps
the login, a fingerprint of the password hash (a password change ends every other
session) and the login time (sessions end after ``ABSOLUTE`` seconds whatever happens).

Pages: data on file and EDS status (para. 12: confirm in the page with NCALayer), login
history, password change, closing the mailbox (cooling-off period, export first).
Form errors are shown next to their field, in the reader's language.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from typing import Any

from starlette.responses import FileResponse, RedirectResponse

from esam_mail.errors import AuthError, EsamError, ValidationError
from esam_mail.i18n import N_
from esam_mail.services.accounts.account import AccountService, Profile
from esam_mail.services.accounts.application import ValidationErrors
from esam_mail.services.accounts.password_policy import MIN_LENGTH
from esam_mail.services.accounts.password_policy import preload as preload_password_policy
from esam_mail.web.form_errors import localize
from esam_mail.web.i18n import translator
from esam_mail.web.security import new_csrf, read_form
from esam_mail.web.server import Request, Response, Router, peer
from esam_mail.web.templating import render

__all__ = ["ABSOLUTE", "account_service", "current_profile", "register"]

ABSOLUTE = 12 * 3600

#: The status of a hybrid letter as the subscriber reads it.
HYBRID_STATUS = {
    "ACCEPTED": N_("accepted"),
    "REJECTED": N_("refused"),
    "QUEUED_FOR_PRINT": N_("waiting to be printed"),
    "PRINTED": N_("printed"),
    "PRINT_FAILED": N_("printing failed, will be repeated"),
    "HANDED_TO_POST": N_("handed to the post"),
    "DELIVERED": N_("delivered"),
    "RETURNED": N_("returned to sender"),
}

#: Texts of the services shown on these pages (translated in the ``web`` catalogue).
SERVICE_TEXTS = (
    N_("the two new passwords differ"),
    N_("the new password must differ from the current one"),
    N_("the current password is wrong"),
    N_("the password is wrong"),
    N_("type your mailbox address exactly"),
    N_("The request could not be processed."),
    N_("The signature was not accepted."),
)


def account_service(services: Any) -> AccountService:
    svc = services.extras.get("account")
    if svc is None:
        cfg = services.cfg
        svc = services.extras["account"] = AccountService(
            services.directory, services.hasher, services.authenticator, services.store,
            export_dir=cfg.data_dir / "exports", cooling_off_days=cfg.web.close_cooling_days,
        )
        from esam_mail.services.accounts.notices import NoticeKind, Notices

        async def changed(rec: Any) -> None:  # the notices are built at the first change
            notices = services.extras.get("notices")
            if notices is None:
                notices = services.extras["notices"] = Notices.from_services(services)
            await notices.send(NoticeKind.PASSWORD_CHANGED, rec)

        svc.on_password_changed.append(changed)
    return svc


async def current_profile(request: Request, services: Any) -> Profile | None:
    """The logged-in subscriber of this session, or None (and the session is emptied when
    it is too old, the mailbox is gone or closed, or the password changed)."""
    login = request.session.get("login")
    if not isinstance(login, str):
        return None
    at = request.session.get("at")
    if not isinstance(at, int | float) or time.time() - at > ABSOLUTE:
        request.session.clear()
        return None
    profile = await account_service(services).profile(login)
    if profile is None or profile.fingerprint != request.session.get("fp"):
        request.session.clear()
        return None
    return profile


def start_session(request: Request, profile: Profile) -> None:
    """Rotate: nothing of the pre-login session survives (fixation)."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update({"sid": secrets.token_urlsafe(16), "login": profile.login,
                            "fp": profile.fingerprint, "at": int(time.time())})
    if lang:
        request.session["lang"] = lang
    new_csrf(request)


def begin_second_step(request: Request, profile: Profile) -> None:
    """Password right, a TOTP code still to come: a fresh session that grants nothing yet."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session.update({"pending": profile.login, "pending_fp": profile.fingerprint,
                            "pending_at": int(time.time()), "sid": secrets.token_urlsafe(16)})
    if lang:
        request.session["lang"] = lang
    new_csrf(request)


def _errors(request: Request, problems: list[ValidationError]) -> dict[str, str]:
    lang = translator(request).lang
    out: dict[str, str] = {}
    for p in problems:  # a service's i18n.Message, or a WeakPassword that re-translates itself
        out.setdefault(p.field, localize(p, lang))
    return out


def register(router: Router, services: Any) -> None:
    accounts = account_service(services)
    preload_password_policy()  # start-up: the common-password list is read now, not on the loop

    def to_login() -> Response:
        return RedirectResponse("/account/login", status_code=303)

    async def home(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        history = await accounts.history(profile.address, limit=20)
        closure = await accounts.closure(profile.address)
        letters = await accounts.hybrid_letters(profile.address, services.extras.get("hybrid"))
        return render(request, "account.html", {"profile": profile, "history": history, "closure": closure,
                                                "letters": letters, "notice": request.query_params.get("done"),
                                                "STATUS": HYBRID_STATUS})

    async def login_page(request: Request) -> Response:
        if await current_profile(request, services) is not None:
            return RedirectResponse("/account", status_code=303)
        return render(request, "account_login.html", {"errors": {}, "username": ""})

    async def login(request: Request) -> Response:
        form = await read_form(request)
        username = str(form.get("username", "")).strip()[:320]
        password = str(form.get("password", ""))[:1024]
        _ = translator(request)
        errors: dict[str, str] = {}
        if not username:
            errors["username"] = _("Enter your mailbox address or login.")
        if not password:
            errors["password"] = _("Enter your password.")
        if not errors:
            try:
                profile = await accounts.login(username, password, peer=peer(request))
            except AuthError as exc:
                if str(exc) == "locked":
                    errors["password"] = _("Too many failed attempts. Wait a few minutes and try again.")
                else:
                    errors["password"] = _("The address or the password is wrong.")
            else:
                sf = getattr(services.authenticator, "second_factor", None)
                if sf is not None and await sf.enabled(profile.id):
                    begin_second_step(request, profile)
                    return RedirectResponse("/account/login/code", status_code=303)
                start_session(request, profile)
                return RedirectResponse("/account", status_code=303)
        return render(request, "account_login.html", {"errors": errors, "username": username}, status=400)

    async def logout(request: Request) -> Response:
        await read_form(request)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    async def password_page(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        return render(request, "account_password.html", {"profile": profile, "errors": {},
                                                         "min_length": MIN_LENGTH})

    async def password(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        form = await read_form(request)
        try:
            updated = await accounts.change_password(
                profile.login, str(form.get("current_password", "")), str(form.get("new_password", "")),
                str(form.get("new_password2", "")), peer=peer(request),
            )
        except ValidationErrors as e:
            return render(request, "account_password.html",
                          {"profile": profile, "errors": _errors(request, list(e.errors)),
                           "min_length": MIN_LENGTH}, status=400)
        start_session(request, updated)  # this session goes on; all others end
        return RedirectResponse("/account?done=password", status_code=303)

    async def close_page(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        closure = await accounts.closure(profile.address)
        return render(request, "account_close.html", {"profile": profile, "closure": closure, "errors": {},
                                                      "days": services.cfg.web.close_cooling_days})

    async def close(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        form = await read_form(request)
        try:
            await accounts.request_closure(profile.login, str(form.get("password", "")),
                                           str(form.get("confirm_address", "")), peer=peer(request))
        except ValidationErrors as e:
            return render(request, "account_close.html",
                          {"profile": profile, "closure": None, "errors": _errors(request, list(e.errors)),
                           "days": services.cfg.web.close_cooling_days}, status=400)
        return RedirectResponse("/account/close", status_code=303)

    async def cancel_close(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        await read_form(request)
        await accounts.cancel_closure(profile.login, peer=peer(request))
        return RedirectResponse("/account?done=cancelled", status_code=303)

    async def export(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        path = await asyncio.to_thread(accounts.export_file, profile.login, request.path_params["name"])
        if path is None:
            return render(request, "error.html", {"status": 404}, status=404)
        return FileResponse(path, media_type="application/zip", filename=path.name,
                            headers={"cache-control": "no-store"})

    # -- EDS confirmation (para. 12) ------------------------------------------------------

    async def confirm_page(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        from esam_mail.services.accounts.online import eds_services

        challenge = None
        error = None
        if not profile.eds_confirmed:
            try:
                challenge = await eds_services(services).confirmations.issue(
                    profile.login, actor=("subscriber", profile.login))
            except EsamError as exc:
                error = translator(request)(getattr(exc, "public", "") or "The request could not be processed.")
        return render(request, "account_confirm.html", {"profile": profile, "challenge": challenge,
                                                        "error": error, "errors": {}})

    async def confirm(request: Request) -> Response:
        profile = await current_profile(request, services)
        if profile is None:
            return to_login()
        from esam_mail.services.accounts.online import eds_services

        form = await read_form(request)
        _ = translator(request)
        cms = "".join(str(form.get("cms", "")).split())
        text = str(form.get("challenge", ""))
        errors: dict[str, str] = {}
        if not cms:
            errors["cms"] = _("Sign the text with NCALayer or paste the signature.")
        else:
            try:
                base64.b64decode(cms + "=" * (-len(cms) % 4), validate=True)
            except ValueError:
                errors["cms"] = _("The signature is not valid Base64.")
        if not errors:
            try:
                await eds_services(services).confirmations.confirm(
                    profile.login, cms, challenge=text or None, actor=("subscriber", profile.login))
            except EsamError as exc:
                errors["cms"] = _(getattr(exc, "public", "") or "The signature was not accepted.")
            else:
                return RedirectResponse("/account?done=confirmed", status_code=303)
        challenge = None
        try:
            challenge = await eds_services(services).confirmations.issue(
                profile.login, actor=("subscriber", profile.login))
        except EsamError:
            pass
        return render(request, "account_confirm.html", {"profile": profile, "challenge": challenge,
                                                        "error": None, "errors": errors}, status=400)

    router.add("GET", "/account", home)
    router.add("GET", "/account/login", login_page)
    router.add("POST", "/account/login", login)
    router.add("POST", "/account/logout", logout)
    router.add("GET", "/account/password", password_page)
    router.add("POST", "/account/password", password)
    router.add("GET", "/account/close", close_page)
    router.add("POST", "/account/close", close)
    router.add("POST", "/account/close/cancel", cancel_close)
    router.add("GET", "/account/export/{name}", export)
    router.add("GET", "/account/confirm", confirm_page)
    router.add("POST", "/account/confirm", confirm)
