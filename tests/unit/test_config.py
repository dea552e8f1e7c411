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


def test_key_problems_and_cross_key_problems_come_in_one_report(tmp_path: Path) -> None:
    """check-config promises every problem at once: a refused key must not hide the
    checks that look at several keys (domain syntax, host:port, readable files)."""
    raw = {
        "server": {"workers": 0},  # a single-key problem
        "mail": {"domain": "bad domain"},  # cross-key/semantic problems
        "listen": {"smtp": "nonsense"},
        "registration": {"agreement_file": str(tmp_path / "missing.txt")},
        "outbound": {"retry_base": 600, "retry_max": 60},
    }
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    keys = [p.split(":", 1)[0] for p in info.value.problems]
    assert keys == [
        "server.workers", "listen.smtp", "mail.domain", "registration.agreement_file", "outbound.retry_max",
    ], info.value.problems


def test_a_refused_key_is_not_reported_twice() -> None:
    # tls.cert is refused (not a string) and so stays empty, which the cross-key check
    # "cert and key together" would report again under the same key
    with pytest.raises(ConfigError) as info:
        config.from_dict({"tls": {"cert": 5, "key": "/nonexistent/key.pem"}})
    keys = [p.split(":", 1)[0] for p in info.value.problems]
    assert keys.count("tls.cert") == 1 and "tls.key" in keys, info.value.problems


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


def test_public_ports_follow_the_listeners_unless_given() -> None:
    """Autoconfig/autodiscover/`esam dns` advertise the ports actually served: a development
    config on 1993/2587 advertises those, not 993/587 (RFC 6186 SRV, Thunderbird autoconfig)."""
    from esam_mail.web.autoconfig import outlook_xml, thunderbird_xml

    cfg = config.from_dict({
        "listen": {"imaps": "127.0.0.1:1993", "imap": "127.0.0.1:1143", "submissions": "127.0.0.1:0",
                   "submission": "[::1]:2587"},
        "public": {"imap_port": 10143},  # given: kept
        "registration": {"agreement_file": str(ROOT / "conf/agreement.txt")},
    })
    p = cfg.public
    assert (p.imaps_port, p.imap_port, p.submissions_port, p.submission_port) == (1993, 10143, 465, 2587)
    xml = thunderbird_xml(cfg, cfg.mail.domain).decode()
    for port in ("1993", "10143", "465", "2587"):
        assert f"<port>{port}</port>" in xml, xml
    assert "<port>993</port>" not in xml and "<port>587</port>" not in xml
    assert "<Port>1993</Port>" in outlook_xml(cfg, f"alice@{cfg.mail.domain}").decode()


def test_public_ports_of_the_built_in_defaults_match_its_listeners() -> None:
    cfg = config.Config()
    assert cfg.public.imaps_port == config.parse_hostport(cfg.listen.imaps)[1]
    assert cfg.public.submission_port == config.parse_hostport(cfg.listen.submission)[1]
