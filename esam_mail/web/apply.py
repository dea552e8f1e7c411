"""``GET /apply``: the online application form, with the user agreement.

The page (no external assets) builds the application JSON, asks
``/api/v1/applications/canonical`` for the bytes to sign, lets NCALayer sign them
(or takes a pasted Base64 CMS) and posts everything to ``/api/v1/applications``
(see :mod:`esam_mail.web.eds`).  The script is the static ``/static/apply.js``, so the
Content-Security-Policy allows no inline script; it allows a WebSocket to NCALayer on
``wss://127.0.0.1:13579`` and nothing from elsewhere.
"""

from __future__ import annotations

from typing import Any

from esam_mail.errors import ConfigError
from esam_mail.services.accounts.online import eds_services
from esam_mail.web.i18n import lang_of
from esam_mail.web.pages import agreement_texts
from esam_mail.web.server import Request, Response, Router
from esam_mail.web.templating import render

__all__ = ["register"]


def register(router: Router, services: Any) -> None:
    """Add ``GET /apply``."""
    texts = agreement_texts(services.cfg)  # read at start-up, not on the loop

    async def page(request: Request) -> Response:
        try:
            eds_services(services)
        except ConfigError:
            return render(request, "error.html", {"status": 503}, status=503)
        agreement = texts.get(lang_of(request)) or texts.get("en")
        if agreement is None:
            return render(request, "error.html", {"status": 503}, status=503)
        return render(request, "apply.html", {"domain": services.cfg.mail.domain, "agreement": agreement},
                      headers={"referrer-policy": "no-referrer"})

    router.add("GET", "/apply", page)
