"""Fixtures for the store tests: a store in tmp_path (fsync off unless a test needs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from esam_mail.store.maildir import MaildirStore, MaildirUser
from esam_mail.store.notify import LocalNotifier


def msg(n: int = 0, body: bytes = b"hello") -> bytes:
    return (
        (
            f"From: a@example.org\r\nTo: b@example.org\r\nSubject: test {n}\r\n"
            f"Message-ID: <{n}@example.org>\r\n\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


@pytest.fixture
def notifier() -> LocalNotifier:
    return LocalNotifier()


@pytest.fixture
def store(tmp_path: Path, notifier: LocalNotifier) -> MaildirStore:
    # fsync=False: these tests check layout and semantics, not power-loss durability.
    return MaildirStore(tmp_path / "mail", fsync=False, notifier=notifier)


@pytest.fixture
def alice(store: MaildirStore) -> MaildirUser:
    user = store.user("alice")
    user.create()
    return user
