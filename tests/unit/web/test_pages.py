"""Information pages: client settings from the config, the agreement in kk/ru/en with hashes."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from esam_mail import config
from esam_mail.web.server import build_app
from tests.conftest import ROOT, write_config


@pytest.fixture
def site(tmp_path: Path) -> Any:
    cfg = config.load(write_config(
        tmp_path, public={"imap_host": "imap.pochta.kz", "smtp_host": "smtp.pochta.kz", "imaps_port": 10993,
                          "imap_port": 10143, "submissions_port": 10465, "submission_port": 10587},
        web={"support_email": "help@pochta.kz", "support_phone": "+7 727 000 00 00"},
    ))
    with TestClient(build_app(SimpleNamespace(cfg=cfg, spool=None, extras={}, directory=None, hasher=None,
                                                    authenticator=None, store=None)), base_url="http://esam.test") as c:
        yield c


@pytest.mark.parametrize(("lang", "words"), [
    ("kk", ["Пошта бағдарламасының баптаулары", "10993 порты, SSL/TLS", "немесе 10587 порты, STARTTLS"]),
    ("ru", ["Настройки почтовой программы", "порт 10993, SSL/TLS", "или порт 10587, STARTTLS"]),
])
def test_home_shows_the_published_ports_and_contacts(site: Any, lang: str, words: list[str]) -> None:
    page = site.get("/", headers={"Accept-Language": lang}).text
    for w in [*words, "imap.pochta.kz", "smtp.pochta.kz", "help@pochta.kz", "+7 727 000 00 00", "/apply"]:
        assert w in page, w
    for port in ("10143", "10465"):
        assert port in page


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_agreement_in_both_languages_with_hashes_reader_language_first(site: Any, lang: str) -> None:
    page = site.get("/agreement", headers={"Accept-Language": lang}).text
    files = {"kk": ROOT / "conf" / "agreement.kk.txt", "ru": ROOT / "conf" / "agreement.ru.txt",
             "en": ROOT / "conf" / "agreement.txt"}
    for code, path in files.items():
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() in page
        assert html.escape(data.decode().splitlines()[0]) in page
    assert page.index(f'id="agreement-{lang}"') < min(page.index(f'id="agreement-{o}"') for o in files if o != lang)
