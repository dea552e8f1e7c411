"""HTTP API: EDS confirmation of a mailbox and online applications signed with EDS.

Routes (JSON in, JSON out; errors are ``{"error": code, "message": text}`` or,
for field problems, ``422 {"error": "invalid", "problems": [{field, message}]}``)::

    GET  /api/v1/agreement                  -> {version, sha256, text}
    POST /api/v1/applications/canonical     {kind, application, language?} -> {kind, canonical, base64,
                                             sha256, consent: {agreement_version, agreement_sha256,
                                             language}}
    POST /api/v1/applications               {kind, application, accept_agreement, password,
                                             signature, language?} -> 201 {address, login, status, ...}

The signed document is the application *and* the consent (agreement version in force, the
SHA-256 of its text in ``language``, the language; default: the page's language); a signature
over the bare application is refused with ``consent_not_signed``.
    POST /api/v1/confirmations/challenge    (Basic auth) -> {challenge, expires_at}
    POST /api/v1/confirmations              (Basic auth) {cms, challenge?} -> {confirmed: true, ...}
    GET  /api/v1/confirmations              (Basic auth) -> {address, confirmed, latest}

The confirmation endpoints authenticate the mailbox owner with HTTP Basic
(login or address, and the mailbox password) through the same authenticator
(and brute-force lock-out) as IMAP and SMTP.  The listener itself speaks plain
HTTP on 127.0.0.1 by default: **in production put it behind a TLS-terminating
reverse proxy** (credentials and personal data travel in these requests).

Status codes: EDS refusals answer 400 with the verifier's code
(``bad_signature``, ``certificate_expired``, ``untrusted_certificate``, ...;
``revocation_unavailable`` is 503); ``signer_mismatch`` / ``role_not_allowed``
403; ``challenge_expired`` / ``challenge_used`` / ``challenge_unknown`` /
``not_confirmable`` 409; ``eds_not_configured`` 503; no or wrong credentials
401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from esam_mail.errors import AuthError, ConfigError, EsamError, LoginTaken, ValidationError
from esam_mail.i18n import Translator, domain_message
from esam_mail.i18n import normalize as normalize_language
from esam_mail.services.accounts.application import ValidationErrors
from esam_mail.services.accounts.confirmation import ConfirmationError
from esam_mail.services.accounts.eds import EdsError, RevocationUnavailable
from esam_mail.services.accounts.online import EdsServices, eds_services
from esam_mail.web.form_errors import localize
from esam_mail.web.i18n import current as current_lang
from esam_mail.web.i18n import lang_of
from esam_mail.web.server import (
    Request,
    Response,
    Router,
    error_response,
    json_body,
    json_response,
    peer,
    request_id,
)
from esam_mail.web.statuses import http_status

__all__ = ["register"]

WM_ = domain_message("web")

_REALM = 'Basic realm="esam_mail", charset="UTF-8"'


def invalid(problems: list[ValidationError], request_id: str) -> Response:
    """422 with every field problem; ``text`` says it in the reader's language (for pages)."""
    lang = current_lang.get()
    errs = [{"field": p.field, "message": p.message, "text": localize(p, lang)} for p in problems]
    return json_response({"error": "invalid", "problems": errs, "request_id": request_id}, 422)


def refusal(exc: BaseException, request_id: str) -> Response:
    """The reply for an error of this API (see the module docstring for the codes)."""
    if isinstance(exc, ValidationErrors):
        return invalid(list(exc.errors), request_id)
    if isinstance(exc, ValidationError):
        return invalid([exc], request_id)
    if isinstance(exc, LoginTaken):
        return invalid(
            [ValidationError("username", WM_("this user name was issued before and is never issued again"))],
            request_id,
        )
    if isinstance(exc, AuthError):
        resp = json_response({"error": "unauthorized", "message": "login and password required",
                              "request_id": request_id}, 401)  # fmt: skip
        resp.headers["www-authenticate"] = _REALM
        return resp
    if isinstance(exc, ConfigError):
        return json_response(
            {"error": "unavailable", "message": "the service is not configured", "request_id": request_id},
            503,
        )
    if isinstance(exc, RevocationUnavailable):
        return json_response({"error": exc.code, "message": exc.public, "request_id": request_id,
                              "text": Translator("web", current_lang.get())(exc.public)}, 503)
    if isinstance(exc, EdsError | ConfirmationError):
        status = http_status(exc)
        return json_response({"error": exc.code, "message": exc.public, "request_id": request_id,
                              "text": Translator("web", current_lang.get())(exc.public)}, status)
    return error_response(exc, request_id)


async def _obj(req: Request) -> dict[str, Any]:
    body = await json_body(req)
    if not isinstance(body, dict):
        raise ValidationError("body", WM_("the request body must be a JSON object"))
    return body


def _b64_text(value: object, field: str) -> str:
    """A Base64 text field (what NCALayer returns), checked to decode."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, WM_("give the detached CMS signature as Base64 text"))
    compact = "".join(value.split())
    try:
        base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field, WM_("the signature is not valid Base64")) from None
    return compact


def _basic(req: Request) -> tuple[str, str]:
    header = req.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise AuthError("no credentials")
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AuthError("bad credentials") from None
    if not sep or not user or not password:
        raise AuthError("bad credentials")
    return user, password


def register(router: Router, services: Any) -> None:
    """Add the EDS and online-application routes."""

    def eds() -> EdsServices:
        return eds_services(services)  # built on first use; ConfigError -> 503

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(req: Request) -> Response:
            try:
                return await handler(req)
            except EsamError as exc:
                return refusal(exc, request_id(req))

        return wrapper

    async def owner(req: Request) -> str:
        user, password = _basic(req)
        principal = await services.authenticator.authenticate(user, password, peer=peer(req), service="http")
        return str(principal.login)

    # -- agreement and applications --------------------------------------------------------

    async def agreement(req: Request) -> Response:
        return json_response(eds().applications.agreement().to_dict())

    def language(req: Request, body: dict[str, Any]) -> str:
        """The agreement edition the applicant reads: ``language`` in the body, else the page's."""
        chosen = body.get("language")
        if chosen is not None and (not isinstance(chosen, str) or normalize_language(chosen) != chosen):
            raise ValidationError("language", WM_("the language must be one of kk, ru, en"))
        return chosen or lang_of(req)

    async def canonical(req: Request) -> Response:
        body = await _obj(req)
        data, edition = eds().applications.prepare(body.get("application"), body.get("kind"), language(req, body))
        return json_response(
            {
                "kind": body.get("kind"),
                "canonical": data.decode("utf-8"),
                "base64": base64.b64encode(data).decode("ascii"),
                "sha256": hashlib.sha256(data).hexdigest(),
                "consent": edition.consent(),
            }
        )

    async def apply(req: Request) -> Response:
        body = await _obj(req)
        problems: list[ValidationError] = []
        signature: str | None = None
        try:
            signature = _b64_text(body.get("signature"), "signature")
        except ValidationError as e:
            problems.append(e)
        password = body.get("password")
        if not isinstance(password, str) or not password:
            problems.append(ValidationError("password", WM_("choose a password for the new mailbox")))
            password = None
        accepted = body.get("accept_agreement")
        if accepted is True:
            problems.append(
                ValidationError(
                    "accept_agreement",
                    WM_("give the version label of the agreement you accepted (GET /api/v1/agreement)"),
                )
            )
        elif accepted is not None and not isinstance(accepted, str):
            problems.append(ValidationError("accept_agreement", WM_("the agreement version must be text")))
        svc = eds().applications
        try:
            svc.validate(body.get("application"), body.get("kind"))
        except ValidationErrors as e:
            problems[:0] = e.errors
        lang = "kk"
        try:
            lang = language(req, body)
        except ValidationError as e:
            problems.append(e)
        if problems:
            return invalid(problems, request_id(req))
        done = await svc.submit(
            body["application"],
            kind=body["kind"],
            signature=signature,
            accepted_agreement=accepted if isinstance(accepted, str) else None,
            password=password,
            language=lang,
        )
        return json_response(done.to_dict(), 201)

    # -- confirmation ----------------------------------------------------------------------

    async def challenge(req: Request) -> Response:
        login = await owner(req)
        issued = await eds().confirmations.issue(login, actor=("subscriber", login))
        return json_response(issued.to_dict())

    async def confirm(req: Request) -> Response:
        login = await owner(req)
        body = await _obj(req)
        cms = _b64_text(body.get("cms"), "cms")
        text = body.get("challenge")
        if text is not None and not isinstance(text, str):
            raise ValidationError("challenge", WM_("the challenge must be the text you signed"))
        done = await eds().confirmations.confirm(login, cms, challenge=text, actor=("subscriber", login))
        return json_response(done.to_dict())

    async def status(req: Request) -> Response:
        login = await owner(req)
        return json_response((await eds().confirmations.status(login)).to_dict())

    router.add("GET", "/api/v1/agreement", guarded(agreement))
    router.add("POST", "/api/v1/applications/canonical", guarded(canonical))
    router.add("POST", "/api/v1/applications", guarded(apply))
    router.add("POST", "/api/v1/confirmations/challenge", guarded(challenge))
    router.add("POST", "/api/v1/confirmations", guarded(confirm))
    router.add("GET", "/api/v1/confirmations", guarded(status))
