"""Status events: transitions, the append-only log, status e-mails."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from esam_mail import i18n
from esam_mail.services.hybrid.errors import TransitionError
from esam_mail.services.hybrid.events import (
    NOTIFY_EVENTS,
    RETURN_REASONS,
    EventLog,
    EventRecord,
    HybridEvent,
    build_status_email,
    can_transition,
    needs_status_email,
    reason_text,
)

E = HybridEvent
T = "RR123456785KZ"


def test_transitions() -> None:
    assert can_transition(None, E.ACCEPTED)
    assert not can_transition(None, E.PRINTED)
    assert can_transition(E.QUEUED_FOR_PRINT, E.PRINT_FAILED)
    assert can_transition(E.PRINT_FAILED, E.QUEUED_FOR_PRINT)
    assert not can_transition(E.DELIVERED, E.RETURNED)
    assert not can_transition(E.ACCEPTED, E.DELIVERED)
    assert {E.ACCEPTED, E.PRINTED, E.DELIVERED, E.RETURNED} == NOTIFY_EVENTS
    assert needs_status_email(E.PRINTED) and not needs_status_email(E.QUEUED_FOR_PRINT)


def test_append_only_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    assert log.current(T) is None and log.history(T) == []
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for ev in (E.ACCEPTED, E.QUEUED_FOR_PRINT, E.PRINTED, E.HANDED_TO_POST):
        log.append(T, ev, actor="facility:ALA", note="batch\nALA-1", now=t0)
    path = next(tmp_path.rglob(f"{T}.jsonl"))
    before = path.read_bytes()
    with pytest.raises(TransitionError):
        log.append(T, E.PRINTED, actor="x")
    assert path.read_bytes() == before  # refused events leave the log untouched
    rec = log.append(T, E.DELIVERED, actor="postman:42")
    assert path.read_bytes().startswith(before)  # append-only
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["event"] for x in lines] == [
        "ACCEPTED", "QUEUED_FOR_PRINT", "PRINTED", "HANDED_TO_POST", "DELIVERED"]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["time"] == "2026-11-26T10:00:00Z" and lines[0]["note"] == "batch ALA-1"
    assert lines[-1]["actor"] == "postman:42"
    assert log.current(T) is E.DELIVERED and rec.seq == 5


def test_partial_tail_from_a_crash_is_cut(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append(T, E.ACCEPTED, actor="smtp")
    path = next(tmp_path.rglob(f"{T}.jsonl"))
    with path.open("ab") as f:
        f.write(b'{"seq": 2, "trunc')
    assert [r.event for r in log.history(T)] == [E.ACCEPTED]
    log.append(T, E.QUEUED_FOR_PRINT, actor="smtp")
    assert [r.event for r in log.history(T)] == [E.ACCEPTED, E.QUEUED_FOR_PRINT]


@pytest.mark.parametrize("event", sorted(NOTIFY_EVENTS))
def test_status_email(tmp_path: Path, event: HybridEvent) -> None:
    log = EventLog(tmp_path)
    path = {E.ACCEPTED: [E.ACCEPTED], E.PRINTED: [E.ACCEPTED, E.QUEUED_FOR_PRINT, E.PRINTED]}
    path[E.DELIVERED] = [*path[E.PRINTED], E.HANDED_TO_POST, E.DELIVERED]
    path[E.RETURNED] = [*path[E.PRINTED], E.HANDED_TO_POST, E.RETURNED]
    for ev in path[event]:
        rec = log.append(T, ev, actor="test")
    msg = build_status_email(rec, to_address="aigul@pochta.kz", from_address="hybrid@pochta.kz",
                             recipient_summary="Серікбаев А., Алматы", in_reply_to="<a@b>")
    parsed = message_from_bytes(msg.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert T in parsed["Subject"] and parsed["To"] == "aigul@pochta.kz"
    assert parsed["Auto-Submitted"] == "auto-generated" and parsed["Message-ID"]
    assert parsed["In-Reply-To"] == "<a@b>" and parsed["Date"]
    body = parsed.get_body().get_content()
    assert T in body and "Серікбаев" in body
    words = {E.ACCEPTED: ("принято", "қабылданды", "accepted"),
             E.PRINTED: ("напечатано", "басып шығарылды", "printed"),
             E.DELIVERED: ("вручено", "табыс етілді", "delivered"),
             E.RETURNED: ("возвращено", "қайтарылды", "returned")}[event]
    for w in words:
        assert w in body.lower()


@pytest.mark.parametrize("event", list(HybridEvent))
def test_status_texts_come_from_the_hybrid_catalogue(event: HybridEvent) -> None:
    """Every event's e-mail is Russian, Kazakh, English in that order, each part from the
    ``hybrid`` gettext domain (English is the msgid), with the tracking number filled in."""
    rec = EventRecord(1, T, event, datetime(2024, 5, 1, 10, 0, tzinfo=UTC), "test")
    msg = build_status_email(rec, to_address="a@b.kz", from_address="hybrid@pochta.kz", reason="moved")
    ru, kk, en = msg.get_content().split("\n\n")[:3]
    words = [w.strip() for w in str(msg["Subject"]).removeprefix(f"[{T}] ").split(" / ")]
    assert len(words) == 3 and words[0] != words[2] and words[1] != words[2]
    for lang, part, word in (("ru", ru, words[0]), ("kk", kk, words[1])):
        assert i18n.gettext("hybrid", lang, words[2]) == word
        first = part.splitlines()[0]
        assert T in first and first != en.splitlines()[0]
        assert f"{i18n.gettext('hybrid', lang, 'Reason')}: {reason_text('moved', lang)}" in part
    assert en.splitlines()[0].isascii() and "Reason: addressee has moved" in en


@pytest.mark.parametrize("code", sorted(RETURN_REASONS))
def test_return_reasons_are_translated(code: str) -> None:
    en = reason_text(code, "en")
    assert en == RETURN_REASONS[code]
    assert reason_text(code, "ru") != en and reason_text(code, "kk") != en
    assert reason_text(code.upper(), "ru") == reason_text(code, "ru")
    assert reason_text("  free   text ", "kk") == "free text"  # not a code: quoted as given
