"""Information pages: ``/`` (what the service is, how to apply, client settings, contacts)
and the language switch ``/lang/{code}``."""

from __future__ import annotations

from typing import Any

from esam_mail.web import i18n
from esam_mail.web.server import Request, Response, Router
from esam_mail.web.templating import render

__all__ = ["register"]


def register(router: Router, services: Any) -> None:
    cfg = services.cfg

    async def home(request: Request) -> Response:
        return render(request, "index.html", {"domain": cfg.mail.domain})

    router.add("GET", "/", home)
    router.add("GET", "/lang/{code}", i18n.choose)
