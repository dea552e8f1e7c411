"""One password policy for the CLI, registration and the web (issue 16, item 3).

Through ``esam`` (``main()`` in process): ``mailbox add``, ``passwd`` and ``register`` refuse the
same passwords for the same reasons, in the operator's language.
"""

from __future__ import annotations

import gzip
import time

import pytest

from esam_mail.services.accounts import password_policy as pp
from tests.unit.accounts.conftest import Cli
from tests.unit.registration.test_cli import FLAGS, OFFICE

GOOD = "Zhibek-Zholy-77"


# -- the list ------------------------------------------------------------------------------------


def test_shipped_list_has_100000_distinct_lowercase_entries() -> None:
    lines = gzip.decompress(pp.COMMON_LIST.read_bytes()).decode("utf-8").splitlines()
    assert len(lines) == 100_000 == len(set(lines))
    assert all(line == line.lower() and line.strip() == line and line for line in lines)
    assert lines[:2] == ["123456", "password"]
    assert len(pp.common_passwords()) == 100_000


def test_lookup_is_lazy_and_constant_time() -> None:
    pp.common_passwords.cache_clear()
    t0 = time.perf_counter()
    pp.preload()
    load = time.perf_counter() - t0
    assert load < 2.0, load  # read once; well under 0.1 s on a quiet machine
    t0 = time.perf_counter()
    for _ in range(10_000):
        pp.is_common("Zhibek-Zholy-77")
    assert (time.perf_counter() - t0) / 10_000 < 1e-4


# -- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("", "empty"),
        ("Short-1", "too_short"),
        ("x" * 1025, "too_long"),
        ("abcdefgh\x7fijk", "control"),  # DEL: the CLI used to accept it, registration refused it
        ("abcdefgh\x85ijk", "control"),  # C1
        ("tab\tinside-pw", "control"),
        ("my-850525400017", "contains_id"),
        ("ASEM-secret-2026", "contains_login"),
        ("ахметова-2026-x", "contains_name"),
        ("Әсем-пароль-2026", "contains_name"),
        ("qwerty123456", "common"),
        ("PASSWORD1234", "common"),
        ("1234567890", "common"),
    ],
)
def test_refused_with_a_reason(password: str, code: str) -> None:
    problem = pp.password_problem(
        password, login="asem", names=("Ахметова", "Әсем", None), ids=("850525400017",)
    )
    assert problem is not None and problem.code == code
    for lang in ("kk", "ru", "en"):
        assert problem.text(lang)
    assert problem.text("ru") != problem.text("en") != problem.text("kk")


def test_accepted() -> None:
    assert pp.password_problem(GOOD, login="asem", names=("Ахметова", "Әсем"), ids=("850525400017",)) is None


def test_message_in_three_languages() -> None:
    with pytest.raises(pp.WeakPassword) as ei:
        pp.check_password("qwerty", lang="ru")
    assert ei.value.field == "password" and "не менее 10" in ei.value.message
    assert "кемінде 10" in ei.value.text("kk") and "at least 10" in ei.value.text("en")


# -- end to end through `esam` -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "needle"),
    [
        ("password", "at least 10 characters"),  # 8 characters were enough before
        ("password1234", "100,000 most common"),
        ("abcdefgh\x7fijk", "control characters"),  # the CLI accepted DEL before
        ("alice-is-here-1", "login"),
    ],
)
def test_mailbox_add_refuses(cli: Cli, password: str, needle: str) -> None:
    rc, out, err = cli("mailbox", "add", "alice", "--kind", "personal", "--password-stdin", stdin=password + "\n")
    assert rc == 2 and err.startswith("esam: password: ") and needle in err, err
    rc, out, _ = cli("mailbox", "list", "--json")
    assert out.strip() == "[]"


def test_passwd_refuses_name_and_iin_of_the_owner(cli: Cli) -> None:
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin=GOOD + "\n")
    assert rc == 0, err
    for bad, needle in (("Ахметова-новый-1", "name"), ("x850525400017y", "IIN"), ("asem.secret.99", "login")):
        rc, _, err = cli("passwd", "asem", "--password-stdin", stdin=bad + "\n")
        assert rc == 2 and needle in err, err
    rc, out, err = cli("passwd", "asem", "--password-stdin", stdin="Another-Good-Pass-9\n")
    assert rc == 0 and "password changed" in out, err


def test_register_refuses_password_with_iin_and_cli_and_registration_agree(cli: Cli) -> None:
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin="iin850525400017\n")
    assert rc == 2 and "esam: password: " in err and "IIN" in err
    rc, _, err = cli("register", "individual", *FLAGS, *OFFICE, "--password-stdin", stdin="abcdefgh\x7fijk\n")
    assert rc == 2 and "control characters" in err
    rc, _, err = cli("mailbox", "add", "bob", "--password-stdin", stdin="abcdefgh\x7fijk\n")
    assert rc == 2 and "control characters" in err


def test_operator_language(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESAM_LANG", "ru")
    rc, _, err = cli("mailbox", "add", "alice", "--password-stdin", stdin="short\n")
    assert rc == 2 and "не менее 10 символов" in err
    monkeypatch.setenv("ESAM_LANG", "kk")
    rc, _, err = cli("mailbox", "add", "alice", "--password-stdin", stdin="short\n")
    assert rc == 2 and "кемінде 10 таңба" in err
