"""The web skeleton: security headers, language choice, CSRF, error pages, body cap."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from esam_mail import i18n
from esam_mail.web import security
from esam_mail.web.server import CSP, MAX_BODY

WEB = Path(i18n.__file__).with_name("web")


def test_html_pages_get_a_strict_csp_and_no_inline_code(client: Any) -> None:
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert csp == CSP and "'unsafe-inline'" not in csp and "default-src 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert "<script>" not in resp.text and "<style" not in resp.text and " style=" not in resp.text


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    for path in (WEB / "templates").glob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert "<style" not in text and not re.search(r"\son[a-z]+\s*=", text), path
        assert not re.search(r"\sstyle\s*=", text), path


@pytest.mark.parametrize(
    ("header", "lang", "word"),
    [
        ("ru-RU,ru;q=0.9", "ru", "Личный кабинет"),
        ("kk-KZ", "kk", "Жеке кабинет"),
        ("de-DE", "kk", "Жеке кабинет"),  # the state language by default
        ("en-GB,en;q=0.9", "en", "My account"),
    ],
)
def test_language_from_accept_language(client: Any, header: str, lang: str, word: str) -> None:
    resp = client.get("/", headers={"Accept-Language": header})
    assert f'<html lang="{lang}">' in resp.text and word in resp.text


def test_language_switch_is_remembered_and_redirect_stays_local(client: Any) -> None:
    resp = client.get("/lang/ru?next=/apply", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/apply"
    cookie = resp.headers["set-cookie"]
    assert "esam_lang=ru" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = client.get("/", headers={"Accept-Language": "kk"})
    assert '<html lang="ru">' in page.text  # the choice beats the browser's preference
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        r = client.get("/lang/kk", params={"next": evil}, follow_redirects=False)
        assert r.headers["location"] == "/", evil
    r = client.get("/lang/xx?next=/", follow_redirects=False)
    assert r.status_code == 303 and "esam_lang=xx" not in r.headers.get("set-cookie", "")


def test_unknown_path_json_for_programs_html_for_people(client: Any) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json() == {"error": "not_found"}
    r = client.get("/nope", headers={"Accept": "text/html", "Accept-Language": "ru"})
    assert r.status_code == 404 and "Такой страницы нет." in r.text
    r = client.post("/healthz")
    assert r.status_code == 405 and r.json() == {"error": "method_not_allowed"}


def test_body_cap(client: Any) -> None:
    r = client.post("/api/v1/applications", content=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413 and r.json() == {"error": "too_large"}


def _form_app() -> Starlette:
    async def show(request: Request) -> PlainTextResponse:
        return PlainTextResponse(security.csrf_token(request))

    async def post(request: Request) -> PlainTextResponse:
        form = await security.read_form(request)
        return PlainTextResponse(f"ok {form.get('x')}")

    return Starlette(
        routes=[Route("/f", show), Route("/f", post, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, secret_key="k" * 32)],
    )


def test_csrf_token_is_bound_to_the_session() -> None:
    with TestClient(_form_app(), base_url="http://t.test", raise_server_exceptions=False) as c:
        token = c.get("/f").text
        assert c.post("/f", data={"x": "1"}).status_code == 403  # no token
        assert c.post("/f", data={"x": "1", "csrf_token": token + "x"}).status_code == 403
        assert c.post("/f", data={"x": "1", "csrf_token": token}).text == "ok 1"
        cross = c.post("/f", data={"x": "1", "csrf_token": token}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        assert (
            c.post("/f", data={"x": "1", "csrf_token": token}, headers={"Origin": "http://t.test"}).text
            == "ok 1"
        )
    with TestClient(_form_app(), base_url="http://t.test") as other:  # another browser: its own session
        other.get("/f")
        assert other.post("/f", data={"x": "1", "csrf_token": token}).status_code == 403


def test_session_secret_is_made_once_and_private(web_cfg: Any) -> None:
    first = security.session_secret(web_cfg)
    path = web_cfg.data_dir / "web" / "session.key"
    assert len(first) >= 48 and path.stat().st_mode & 0o077 == 0
    assert security.session_secret(web_cfg) == first


def test_session_secret_never_empty_after_a_crash(web_cfg: Any) -> None:
    """A worker killed between creating session.key and writing it left an empty file,
    and every worker then signed cookies with the empty key (forgeable sessions)."""
    path = web_cfg.data_dir / "web" / "session.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    key = security.session_secret(web_cfg)
    assert len(key) >= 48 and path.read_text().strip() == key
    assert security.session_secret(web_cfg) == key
    path.write_text("short\n")  # not a key we made either
    assert len(security.session_secret(web_cfg)) >= 48


def test_session_secret_agreed_by_racing_workers(web_cfg: Any) -> None:
    """Workers starting together all get the one key (none reads a half-written file)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        keys = pool.map(security.session_secret, [web_cfg] * 24)
    assert len(set(keys)) == 1 and len(keys[0]) >= 48


def _msgids() -> set[str]:
    """Every text the web pages translate: ``_()``/``gettext`` in templates and modules."""
    found: set[str] = set()
    for path in (WEB / "templates").rglob("*.html"):
        with path.open("rb") as fh:
            for _, _, msg, _ in babel_extract(fh, ("_", "gettext", "ngettext"), [], {}):
                found.update(m for m in (msg if isinstance(msg, tuple) else (msg,)) if m)
    for path in WEB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_every_web_text_is_translated(lang: str) -> None:
    with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "web.po").open("rb") as fh:
        have = {m.id for m in read_po(fh) if m.id and m.string}
    missing = sorted(_msgids() - have)
    assert not missing, f"{lang}/web.po lacks: {missing}"


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_signature_refusals_shown_in_the_account_are_translated(lang: str) -> None:
    from esam_mail.services.accounts import confirmation, eds

    texts = {
        c.default_public
        for mod in (eds, confirmation)
        for c in vars(mod).values()
        if isinstance(c, type) and "default_public" in c.__dict__
    }
    with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "web.po").open("rb") as fh:
        have = {m.id for m in read_po(fh) if m.id and m.string}
    assert texts and not sorted(texts - have)


def test_session_cookie_is_secure_exactly_over_https(web_cfg: Any) -> None:
    from types import SimpleNamespace

    from esam_mail.web.server import build_app

    services = SimpleNamespace(
        cfg=web_cfg, directory=None, spool=None, extras={}, hasher=None, authenticator=None, store=None
    )
    app = build_app(services)
    for base, secure in (("https://esam.test", True), ("http://esam.test", False)):
        with TestClient(app, base_url=base) as c:
            cookie = c.get("/account/login").headers["set-cookie"]
            assert "esam_session=" in cookie and "httponly" in cookie.lower()
            assert ("secure" in cookie.lower().split("; ")) is secure, cookie
