"""``GET /apply``: the online application form of an individual, with the user agreement.

The page (no external assets) builds the application JSON, asks
``/api/v1/applications/canonical`` for the bytes to sign, lets NCALayer sign them
(or takes a pasted Base64 CMS) and posts everything to ``/api/v1/applications``
(see :mod:`esam_mail.web.eds`).  The script is served separately from
``/apply.js`` so the Content-Security-Policy allows no inline script; it allows
a WebSocket to NCALayer on ``wss://127.0.0.1:13579`` and nothing from elsewhere.
"""

from __future__ import annotations

import html
from typing import Any

from esam_mail.errors import ConfigError
from esam_mail.services.online import eds_services
from esam_mail.web._apply_assets import PAGE, SCRIPT
from esam_mail.web.server import Request, Response, Router

__all__ = ["CSP", "register"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "connect-src 'self' wss://127.0.0.1:13579; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def register(router: Router, services: Any) -> None:
    """Add ``GET /apply`` and ``GET /apply.js``."""

    async def page(req: Request) -> Response:
        try:
            agreement = eds_services(services).applications.agreement()
        except ConfigError:
            return Response.html("<!doctype html><title>Unavailable</title><p>Applications are not "
                                 "accepted at the moment.</p>", 503)  # fmt: skip
        body = PAGE.format(
            domain=html.escape(services.cfg.mail.domain),
            version=html.escape(agreement.version, quote=True),
            sha256=html.escape(agreement.sha256),
            agreement=html.escape(agreement.text),
        )
        resp = Response.html(body)
        resp.headers.update({"content-security-policy": CSP, "cache-control": "no-store",
                             "referrer-policy": "no-referrer"})  # fmt: skip
        return resp

    async def script(req: Request) -> Response:
        return Response(200, SCRIPT.encode("utf-8"), "text/javascript; charset=utf-8",
                        {"cache-control": "no-cache"})  # fmt: skip

    router.add("GET", "/apply", page)
    router.add("GET", "/apply\\.js", script)
