"""Folder name mapping: modified UTF-7 (RFC 3501 5.1.3) and our '.'/'%' escaping."""

from __future__ import annotations

import pytest

from esam_mail.errors import BadFolderName
from esam_mail.store import names


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("Sent", "Sent"),
        ("&", "&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("台北", "&U,BTFw-"),  # RFC 3501 example: ',' stands for '/'
        ("Входящие", "&BBIERQQ+BDQETwRJBDgENQ-"),
    ],
)
def test_mutf7(text: str, encoded: str) -> None:
    assert names.mutf7_encode(text) == encoded
    assert names.mutf7_decode(encoded) == text


@pytest.mark.parametrize(
    "name", ["Sent", "Projects/2026", "v1.2/a%b".replace("%", "_"), "a.b.c", "Ünï/cøde", "&x", "~"]
)
def test_round_trip(name: str) -> None:
    disk = names.to_disk(name)
    assert disk is not None and "/" not in disk and disk.startswith(".")
    assert disk.isascii()
    assert names.from_disk(disk) == name


def test_inbox_case_insensitive() -> None:
    assert names.normalize("inBox") == "INBOX"
    assert names.normalize("inbox/Sub") == "INBOX/Sub"
    assert names.to_disk("Inbox") is None
    assert names.normalize("Inboxes") == "Inboxes"


@pytest.mark.parametrize("dirname", [".", "..", "...", ".a..b", ".a%2", ".a%41", ".&Jjo", ".&AGE-"])
def test_foreign_dirs_ignored(dirname: str) -> None:
    assert names.from_disk(dirname) is None


def test_nfc_normalised() -> None:
    assert names.normalize("e\u0301") == "\u00e9"


def test_long_encoded_name_rejected() -> None:
    with pytest.raises(BadFolderName):
        names.normalize("Ж" * 120)  # 120 chars but > 200 bytes on disk
