"""Jinja2 templates of the web pages, translated through :mod:`esam_mail.i18n` (domain ``web``).

Templates call ``_("English text {name}", name=value)``: the text is looked up in the
reader's language (:mod:`esam_mail.web.i18n`), autoescaped, and ``{placeholders}`` are
filled with escaped values, the same convention as every other catalogue of the project
(so ``tests/unit/test_i18n.py`` checks the placeholders of web texts too).  The
``jinja2.ext.i18n`` extension is loaded so that Babel's Jinja2 extractor sees those calls;
its ``%``-formatting ``gettext`` is replaced by ours.

Every template is compiled when the application is built (no file I/O while serving, no
``auto_reload`` stat calls).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from esam_mail.i18n import LANGUAGE_NAMES, LANGUAGES, gettext, translations
from esam_mail.web.i18n import DOMAIN, current, lang_of
from esam_mail.web.security import CSRF_FIELD, csrf_token

TEMPLATE_DIR = Path(__file__).with_name("templates")


def _lang(ctx: Any) -> str:
    request = ctx.get("request")
    return lang_of(request) if request is not None else current.get()


@pass_context
def _gettext(ctx: Any, msgid: str, /, **params: Any) -> Markup:
    text = gettext(DOMAIN, _lang(ctx), msgid)
    return Markup.escape(text).format(**params) if params else Markup.escape(text)


@pass_context
def _ngettext(ctx: Any, singular: str, plural: str, n: int, /, **params: Any) -> Markup:
    text = translations(DOMAIN, _lang(ctx)).ngettext(singular, plural, n)
    return Markup.escape(text).format(n=n, **params)


@pass_context
def _csrf_field(ctx: Any) -> Markup:
    token = csrf_token(ctx["request"])
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(["html", "xml"], default=True),
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        _=_gettext, gettext=_gettext, ngettext=_ngettext, csrf_field=_csrf_field,
        LANGUAGES=LANGUAGES, LANGUAGE_NAMES=LANGUAGE_NAMES,
    )
    return env


ENV = _environment()


def preload() -> None:
    """Compile every template now (start-up, before the loop serves anyone)."""
    for name in ENV.list_templates(extensions=["html", "xml", "txt"]):
        ENV.get_template(name)


def render(request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """Render a page in the reader's language."""
    ctx = {"request": request, "lang": lang_of(request), **(context or {})}
    html = ENV.get_template(name).render(ctx)
    out = {"cache-control": "no-store"} | (headers or {})
    return HTMLResponse(html, status_code=status, headers=out)
