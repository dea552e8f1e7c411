"""The reader's language: chosen, remembered, and bound to the request.

Order: an explicit choice (``/lang/<code>``, remembered in the ``esam_lang`` cookie for a
year), else the browser's ``Accept-Language`` (:func:`esam_mail.i18n.negotiate`), else
Kazakh.  The language of a request is in ``request.scope["esam.lang"]`` and in a context
variable, so templates and form errors translate without passing it around.
"""

from __future__ import annotations

import contextvars
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from esam_mail.i18n import LANGUAGES, Translator, negotiate

LANG_COOKIE = "esam_lang"
DOMAIN = "web"
current: contextvars.ContextVar[str] = contextvars.ContextVar("esam_web_lang", default="kk")


def lang_of(request: HTTPConnection) -> str:
    return str(request.scope.get("esam.lang") or current.get())


def translator(request: HTTPConnection | None = None) -> Translator:
    """``_ = translator(request); _("Text {x}", x=...)`` in the ``web`` catalogue."""
    return Translator(DOMAIN, lang_of(request) if request is not None else current.get())


class LanguageMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            conn = HTTPConnection(scope)
            chosen = conn.cookies.get(LANG_COOKIE, "")
            lang = chosen if chosen in LANGUAGES else negotiate(conn.headers.get("accept-language"))
            scope["esam.lang"] = lang
            token = current.set(lang)
            try:
                await self.app(scope, receive, send)
            finally:
                current.reset(token)
            return
        await self.app(scope, receive, send)


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to (no scheme, no host, no ``//`` or ``\\``: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


async def choose(request: Request) -> Response:
    """``GET /lang/{code}?next=/path``: remember the language and go back."""
    code = request.path_params["code"]
    resp = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if code in LANGUAGES:
        resp.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return resp
