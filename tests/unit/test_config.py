"""Config loading: every problem at once, dotted keys, unknown keys, exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from esam_mail import config
from esam_mail.cli import main
from esam_mail.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid() -> None:
    cfg = config.from_dict({"registration": {"agreement_file": str(ROOT / "conf/agreement.txt")}})
    assert cfg.listen.smtp == "127.0.0.1:2525"
    assert cfg.directory_url.startswith("sqlite+aiosqlite:///")


def test_every_problem_is_reported_with_its_dotted_key() -> None:
    raw = {
        "server": {"workers": 0, "hostnme": "x"},
        "bogus": {},
        "smtp": {"max_recipients": "many"},
        "auth": {"cache_seconds": -1},
    }
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    text = "\n".join(info.value.problems)
    assert "server.workers: must be at least 1" in text
    assert "server.hostnme: unknown key (did you mean hostname?)" in text
    assert "bogus: unknown section" in text
    assert "smtp.max_recipients: must be an integer" in text
    assert "auth.cache_seconds: must be at least 0" in text


def test_semantic_problems_name_the_key() -> None:
    raw = {
        "listen": {"smtp": "nonsense"},
        "mail": {"domain": "bad domain"},
        "tls": {"cert": "/nonexistent.pem"},
        "directory": {"url": "mysql://x"},
        "registration": {"agreement_file": str(ROOT / "conf/agreement.txt")},
    }
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    text = "\n".join(info.value.problems)
    for key in ("listen.smtp", "mail.domain", "tls.cert", "directory.url"):
        assert key in text


def test_check_config_exits_78_and_lists_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nworkers = 0\n[smtp]\nmax_recipients = "x"\nunknown = 1\n')
    with pytest.raises(SystemExit) as info:
        main(["-c", str(bad), "check-config"])
    assert info.value.code == 78
    err = capsys.readouterr().err
    assert "server.workers" in err and "smtp.max_recipients" in err and "smtp.unknown: unknown key" in err


def test_esam_config_env_replaces_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nworkers = 0\n")
    monkeypatch.setenv("ESAM_CONFIG", str(bad))
    with pytest.raises(SystemExit) as info:
        main(["check-config"])
    assert info.value.code == 78


def test_toml_syntax_error_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError) as info:
        config.load(bad)
    assert "TOML syntax error" in info.value.problems[0]


def test_conf_esam_toml_is_the_generated_documented_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/esam.toml documents every key; regenerate with `esam config-example --dev`."""
    text = (ROOT / "conf" / "esam.toml").read_text()
    assert text.strip() == config.example(config.DEV_OVERRIDES).strip()
    monkeypatch.chdir(ROOT)
    config.load(ROOT / "conf" / "esam.toml")
