"""Information pages: ``/`` (what the service is, how to apply online or at a post office,
mail-client settings with the ports actually published, contacts and support),
``/agreement`` (the user agreement in Kazakh and Russian, English as a courtesy, each
text with its SHA-256) and the language switch ``/lang/{code}``.

The agreement texts are read once at start-up: ``registration.agreement_file`` (English)
and its translations beside it, ``<name>.kk.txt`` and ``<name>.ru.txt``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esam_mail.i18n import LANGUAGES
from esam_mail.services.ops import dnsrecords
from esam_mail.web import i18n
from esam_mail.web.server import Request, Response, Router
from esam_mail.web.templating import render

__all__ = ["AgreementText", "agreement_texts", "register"]


@dataclass(frozen=True)
class AgreementText:
    lang: str
    version: str
    text: str
    sha256: str


def agreement_texts(cfg: Any) -> dict[str, AgreementText]:
    """The published agreement per language (those whose file exists and is readable)."""
    main: Path = cfg.agreement_path
    out: dict[str, AgreementText] = {}
    for lang in LANGUAGES:
        path = main if lang == "en" else main.with_name(f"{main.stem}.{lang}{main.suffix}")
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if data.strip():
            out[lang] = AgreementText(lang, cfg.registration.agreement_version, data.decode("utf-8"),
                                      hashlib.sha256(data).hexdigest())
    return out


def client_settings(cfg: Any) -> dict[str, Any]:
    hosts = dnsrecords.public_hosts(cfg)
    p = cfg.public
    return {
        "imap_host": hosts["imap"], "smtp_host": hosts["smtp"], "web_host": hosts["web"],
        "imaps_port": p.imaps_port, "imap_port": p.imap_port,
        "submissions_port": p.submissions_port, "submission_port": p.submission_port,
        "display_name": hosts["display_name"],
    }


def register(router: Router, services: Any) -> None:
    cfg = services.cfg
    texts = agreement_texts(cfg)  # start-up: not on the loop while serving
    support = {"email": cfg.web.support_email or f"support@{cfg.mail.domain}", "phone": cfg.web.support_phone}

    async def home(request: Request) -> Response:
        return render(request, "index.html", {
            "domain": cfg.mail.domain, "settings": client_settings(cfg), "support": support,
            "example": f"aigerim.sadykova@{cfg.mail.domain}",
        })

    async def agreement(request: Request) -> Response:
        lang = i18n.lang_of(request)
        order = [lang, *(x for x in ("kk", "ru", "en") if x != lang)]
        return render(request, "agreement.html", {
            "texts": [texts[x] for x in order if x in texts],
            "version": cfg.registration.agreement_version,
        })

    router.add("GET", "/", home)
    router.add("GET", "/agreement", agreement)
    router.add("GET", "/lang/{code}", i18n.choose)
