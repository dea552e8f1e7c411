"""The ``esam`` command speaks the operator's language (kk, ru, en) through the ``cli`` gettext
domain: errors name the field or option, success lines and prompts are translated, and what a
program reads (``--json``, ids, exit codes) is the same in every language.

Language order (``esam_mail.cli._i18n.cli_language``): ``--lang``, then ``$ESAM_LANG``, then
the POSIX locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``: the first one set decides, so
``LC_ALL=C`` means English whatever ``LANG`` says), else English.
"""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from esam_mail import i18n
from esam_mail.cli import _i18n, main
from tests.conftest import migrate_directory, write_config

ROOT = Path(__file__).resolve().parents[2]
CLI_DIR = ROOT / "esam_mail" / "cli"
KAZAKH_ONLY = re.compile("[әғқңөұүһіӘҒҚҢӨҰҮҺІ]")
CYRILLIC = re.compile("[а-яА-ЯёЁ]")
LOCALE_VARS = ("ESAM_LANG", "LC_ALL", "LC_MESSAGES", "LANG")


def in_language(text: str, lang: str) -> bool:
    """Kazakh has letters Russian lacks; English has no Cyrillic at all."""
    if lang == "kk":
        return bool(KAZAKH_ONLY.search(text))
    if lang == "ru":
        return bool(CYRILLIC.search(text)) and not KAZAKH_ONLY.search(text)
    return not CYRILLIC.search(text)


class Cli:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        from esam_mail import config

        self.config = write_config(tmp)
        migrate_directory(config.load(self.config).directory_url)
        self.capsys, self.monkeypatch = capsys, monkeypatch
        for var in LOCALE_VARS:
            monkeypatch.delenv(var, raising=False)

    def __call__(self, lang: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        try:
            rc = main(["--lang", lang, "-c", str(self.config), *args])
        except SystemExit as exc:  # argparse refusals
            rc = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return rc, out, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)


LANGS = ["kk", "ru", "en"]


@pytest.mark.parametrize("lang", LANGS)
def test_refused_quota_names_the_option_in_the_language(cli: Cli, lang: str) -> None:
    rc, _, err = cli(lang, "mailbox", "add", "alice", "--quota-mb", "-5")
    assert rc == 2
    line = next(x for x in err.splitlines() if "argument --quota-mb" in x)  # argparse's own words
    assert "-5" in line and "1073741824" in line
    assert in_language(line.split("--quota-mb", 1)[1], lang), line
    if lang == "en":
        assert "must be between 0 and 1073741824, got -5" in line


@pytest.mark.parametrize("lang", LANGS)
def test_missing_mailbox_in_the_language(cli: Cli, lang: str) -> None:
    rc, out, err = cli(lang, "mailbox", "show", "nobody")
    assert rc == 3 and not out
    assert err.startswith("esam: ") and "nobody" in err and in_language(err, lang), err
    if lang == "en":
        assert "not found: nobody" in err


@pytest.mark.parametrize("lang", LANGS)
def test_check_config_problems_in_the_language(cli: Cli, tmp_path: Path, lang: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mail]\ndomain = "esam.test"\ndefault_quota_mb = -3\n[server]\nworkers = "many"\n')
    cli.config = bad
    rc, out, err = cli(lang, "check-config")
    assert rc == 78 and not out
    lines = err.splitlines()
    assert lines[0].startswith("esam: ") and in_language(lines[0], lang), lines[0]
    quota = next(x for x in lines if "mail.default_quota_mb" in x)
    workers = next(x for x in lines if "server.workers" in x)
    for line in (quota, workers):
        assert in_language(line.split(":", 1)[1], lang), line
    assert "-3" in quota and "'many'" in workers
    if lang == "en":
        assert "configuration problems:" in lines[0] and "must be at least 0, got -3" in quota


@pytest.mark.parametrize("lang", LANGS)
def test_success_line_in_the_language_and_json_the_same_in_every_language(cli: Cli, lang: str) -> None:
    rc, out, err = cli(lang, "mailbox", "add", "alice", "--password-stdin", stdin="a long enough password\n")
    assert rc == 0, err
    assert "alice@esam.test" in out and in_language(out, lang), out
    if lang == "en":
        assert out.startswith("created alice@esam.test")
    rc, out, _ = cli(lang, "mailbox", "show", "alice", "--json")
    data = json.loads(out)
    assert (data["login"], data["state"], data["kind"]) == ("alice", "active", "service")
    assert set(data) >= {"id", "address", "quota_bytes", "usage_bytes", "owner"}
    rc, out, _ = cli(lang, "mailbox", "list")
    assert "alice@esam.test" in out and "active" in out  # the state is a value, not prose


def test_refused_login_names_the_field_in_every_language(cli: Cli) -> None:
    for lang in LANGS:
        rc, _, err = cli(lang, "mailbox", "add", "Bad..Name", "--password-stdin", stdin="a long enough password\n")
        assert rc == 2 and err.startswith("esam: login: ") and in_language(err.split(":", 2)[2], lang), err


def test_help_text_in_the_language(capsys: pytest.CaptureFixture[str]) -> None:
    for lang in LANGS:
        with pytest.raises(SystemExit):
            main(["--lang", lang, "mailbox", "add", "--help"])
        out = capsys.readouterr().out
        m = re.search(r"\n\s+--quota-mb QUOTA_MB\s+(.*\n(?:\s{10,}.*\n)*)", out)
        assert m and "mail.default_quota_mb" in m.group(1), out
        assert in_language(m.group(1), lang), m.group(1)


@pytest.mark.parametrize(
    ("env", "argv_lang", "want"),
    [
        ({}, None, "en"),
        ({"LANG": "ru_RU.UTF-8"}, None, "ru"),
        ({"LANG": "kk_KZ.UTF-8"}, None, "kk"),
        ({"LANG": "ru_RU.UTF-8", "LC_MESSAGES": "kk_KZ.UTF-8"}, None, "kk"),
        ({"LANG": "ru_RU.UTF-8", "LC_ALL": "C"}, None, "en"),  # LC_ALL overrides, as in POSIX
        ({"LANG": "C.UTF-8", "ESAM_LANG": "kk"}, None, "kk"),
        ({"LC_ALL": "ru_RU.UTF-8", "ESAM_LANG": "en"}, None, "en"),
        ({"ESAM_LANG": "ru"}, "kk", "kk"),  # --lang beats everything
        ({"LANG": "de_DE.UTF-8"}, None, "en"),
    ],
)
def test_language_order(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv_lang: str | None, want: str) -> None:
    for var in LOCALE_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(_i18n, "_LANG_OPTION", None)
    if argv_lang:
        _i18n.set_language(argv_lang)
    assert _i18n.cli_language() == want


def test_lang_option_is_read_before_the_parser_is_built() -> None:
    assert _i18n.language_option(["--lang", "ru", "mailbox", "list"]) == "ru"
    assert _i18n.language_option(["-c", "x.toml", "--lang=kk", "stats"]) == "kk"
    assert _i18n.language_option(["stats", "--note", "--lang", "ru"]) is None  # after the command
    assert _i18n.language_option(["--lang", "de", "stats"]) is None  # argparse refuses it


# -- the catalogues --------------------------------------------------------------------------
def cli_msgids() -> dict[str, str]:
    """Every msgid marked in esam_mail/cli (``_()``, ``_n()``, ``N_()``), esam_mail/config.py's
    problems (``Problem(key, msgid)``, imported there as ``P_``) and every ``i18n.Message()`` in
    esam_mail (app.init's report, errors raised below the CLI), with where it is used."""
    found: dict[str, str] = {}
    config = ROOT / "esam_mail" / "config.py"
    for path in sorted((ROOT / "esam_mail").rglob("*.py")):
        if path.parent == CLI_DIR:
            keywords: dict[str, Any] = {"_": None, "N_": None, "_n": (1, 2)}
        elif path == config:
            keywords = {"P_": (2,), "N_": None, "Message": None}
        else:  # a report or error made below the CLI, which the CLI says (commands.say)
            if "Message(" not in path.read_text(encoding="utf-8"):
                continue
            keywords = {"Message": None}
        for lineno, msg, _comments, _ctx in extract_from_file("python", str(path), keywords=keywords):
            m = msg[0] if isinstance(msg, tuple) else msg  # a plural is filed under its singular
            if m:
                found.setdefault(m, f"{path.relative_to(ROOT)}:{lineno}")
    return found


def test_every_cli_msgid_is_translated_in_kazakh_and_russian() -> None:
    used = cli_msgids()
    assert len(used) > 300, "the extraction found too little: is the cli marked with _()?"
    for lang in ("kk", "ru"):
        with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "cli.po").open("rb") as fh:
            catalog = read_po(fh, locale=lang, domain="cli")
        missing = [f"{where}: {msgid!r}" for msgid, where in used.items()
                   if not (catalog.get(msgid) and catalog.get(msgid).string and not catalog.get(msgid).fuzzy)]
        assert not missing, f"{lang}/cli.po lacks:\n" + "\n".join(missing)
        ids = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id}
        stale = sorted(ids - set(used))
        assert not stale, f"{lang}/cli.po has msgids no longer used: {stale}"


WORDS = re.compile(r"[A-Za-z]{3,}\s+[A-Za-z]{2,}")


def _literal_text(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + " " + _literal_text(node.right)
    return ""


def test_no_hard_coded_prose_in_the_cli() -> None:
    """Prose handed to ``print``/``err``/``emit``/argparse or raised as a ValidationError goes
    through ``_()``.  A line that prints config syntax or a command to type (not prose) says so
    with ``# i18n: literal``."""
    found = []
    for path in sorted(CLI_DIR.glob("*.py")):
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            candidates: list[ast.AST] = []
            if name in ("print", "err", "write"):
                candidates += node.args[:1]
            elif name == "emit":
                candidates += node.args[2:3]
            elif name in ("ValidationError", "HybridInputError"):
                candidates += node.args[1:2]
            candidates += [k.value for k in node.keywords if k.arg in ("help", "description", "human")]
            for c in candidates:
                if WORDS.search(_literal_text(c)) and "i18n: literal" not in "".join(
                        lines[node.lineno - 1:(node.end_lineno or node.lineno)]):
                    found.append(f"{path.relative_to(ROOT)}:{c.lineno}: {_literal_text(c)[:60]!r}")
    assert not found, "wrap in _() (esam_mail.cli._i18n):\n" + "\n".join(found)


def test_ops_summaries_in_the_language(cli: Cli, tmp_path: Path) -> None:
    """stats, backup and export end with a summary line the CLI writes (not the services)."""
    cli("en", "mailbox", "add", "alice", "--password-stdin", stdin="a long enough password\n")
    for lang in LANGS:
        rc, out, err = cli(lang, "stats")
        assert rc == 0 and in_language(out, lang), out + err
        assert "service" in out and "active 1" in out  # kinds and states are values
        rc, out, err = cli(lang, "export", "alice", "--format", "mbox", "--output", str(tmp_path / f"x-{lang}"))
        assert rc == 0, err
        assert str(tmp_path / f"x-{lang}") in out and in_language(out.replace(str(tmp_path), ""), lang), out
        rc, out, err = cli(lang, "backup", "--output", str(tmp_path / f"b-{lang}.tar.gz"))
        assert rc == 0 and in_language(out.replace(str(tmp_path), ""), lang), out + err


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_init_says_what_it_did_in_the_language(cli: Cli, tmp_path: Path, lang: str) -> None:
    rc, out, err = cli(lang, "init")
    assert rc == 0, err
    lines = [x.replace(str(tmp_path), "") for x in out.splitlines() if x.strip()]
    assert len(lines) >= 5  # folders, schema, certificates, DKIM key, aliases, ready
    untranslated = [x for x in lines if not in_language(x, lang)]
    assert not untranslated, untranslated


def test_a_service_message_is_said_in_the_operators_language(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ValidationError raised below the CLI whose message is an i18n.Message (English str with
    its msgid) is printed in the operator's language, the field still named."""
    import argparse

    from esam_mail.cli.commands import handle_errors
    from esam_mail.errors import ValidationError
    from esam_mail.i18n import Message

    def refuse(args: argparse.Namespace) -> int:
        raise ValidationError("password", Message("the two passwords differ"))

    monkeypatch.setattr(_i18n, "_LANG_OPTION", "ru")
    assert handle_errors(refuse)(argparse.Namespace()) == 2
    assert capsys.readouterr().err == "esam: password: введённые пароли не совпадают\n"
    monkeypatch.setattr(_i18n, "_LANG_OPTION", "en")
    assert handle_errors(refuse)(argparse.Namespace()) == 2
    assert capsys.readouterr().err == "esam: password: the two passwords differ\n"
