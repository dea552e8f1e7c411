"""The webmail (/mail) over the real HTTP listener, against the same store as IMAP.

Mail arrives over SMTP (smtplib to the MX), is read in a browser-like client (httpx2
with a cookie jar, logged in through /account/login), and IMAP over a real socket sees
the result at once: \\Seen after reading, moved and deleted messages, the Sent copy.
Bad input: no session, no CSRF token, unknown folder, another user's message, bad
attachment indexes, oversized uploads; each gets a clear page in the reader's language
and nothing is written.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx2 as httpx
import pytest

from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

PASSWORD = "correct horse"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


@pytest.fixture
def site(make_running: Any) -> Running:
    r: Running = make_running(smtp={"max_message_size": 200 * 1024, "max_recipients": 5},
                              outbound={"transport": {"other.test": "127.0.0.1:1"}})  # refused: stays queued
    r.add_mailbox("aigerim", PASSWORD)
    r.add_mailbox("bolat", PASSWORD)
    return r


def browser(r: Running, lang: str = "ru") -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{r.ports['http']}", timeout=30,
                        headers={"Accept-Language": lang, "Accept": "text/html"})


def token(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def login(c: httpx.Client, user: str = "aigerim") -> str:
    page = c.get("/account/login").text
    resp = c.post("/account/login", data={"csrf_token": token(page), "username": user, "password": PASSWORD})
    assert resp.status_code == 303, resp.text
    return token(c.get("/mail/compose").text)


def rich_message(subject: str = "Есеп", to: str = "aigerim@esam.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Dana Sender <dana@other.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<rich-1@other.test>"
    msg.set_content("Сәлем! Plain part.\n")
    msg.add_alternative(
        '<p onclick="steal()">Сәлем, <b>Айгерім</b>!<script>alert(1)</script></p>'
        '<img src="https://tracker.example/pixel.png" alt="pixel">'
        '<img src="cid:logo@other.test" alt="logo"><a href="javascript:alert(2)">x</a>'
        '<style>body{display:none}</style><p style="color:red" id="login-form">end</p>',
        subtype="html", cte="quoted-printable",
    )
    html_part = msg.get_payload()[1]
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@other.test>")
    msg.add_attachment(b"%PDF-1.4 report", maintype="application", subtype="pdf",
                       filename="../../есеп 2026\".pdf")
    return msg.as_bytes(policy=email.policy.SMTP)


def deliver(r: Running, data: bytes, rcpt: str = "aigerim@esam.test") -> None:
    with smtplib.SMTP("127.0.0.1", r.ports["smtp"], timeout=20) as s:
        s.sendmail("dana@other.test", [rcpt], data)


def plain(subject: str, body: str = "hello", to: str = "aigerim@esam.test") -> bytes:
    return (f"From: dana@other.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n\r\n{body}\r\n").encode()


def imap(r: Running, user: str = "aigerim") -> imaplib.IMAP4_SSL:
    conn = imaplib.IMAP4_SSL("127.0.0.1", r.ports["imaps"], ssl_context=client_tls(), timeout=20)
    conn.login(user, PASSWORD)
    return conn


def imap_flags(r: Running, folder: str = "INBOX") -> dict[int, str]:
    conn = imap(r)
    try:
        conn.select(folder)
        _typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
        out = {}
        for line in data:
            if not line:
                continue
            text = line.decode() if isinstance(line, bytes) else line[0].decode()
            m = re.search(r"UID (\d+) FLAGS \(([^)]*)\)", text)
            if m:
                out[int(m.group(1))] = m.group(2)
        return out
    finally:
        conn.logout()


def imap_count(r: Running, folder: str, user: str = "aigerim") -> int:
    conn = imap(r, user)
    try:
        _typ, data = conn.select(folder)
        return int(data[0])
    finally:
        conn.logout()


# --------------------------------------------------------------------------- reading


def test_needs_the_account_session(site: Running) -> None:
    with browser(site) as c:
        resp = c.get("/mail")
        assert resp.status_code == 303 and resp.headers["location"] == "/account/login"
        assert c.get("/mail/message?folder=INBOX&uid=1").status_code == 303
        assert c.get("/mail/part?folder=INBOX&uid=1&part=1").status_code == 303


def test_folders_unread_counts_and_newest_first(site: Running) -> None:
    for i in range(3):
        deliver(site, plain(f"Хат {i}"))
    with browser(site, "kk") as c:
        login(c)
        page = c.get("/mail").text
        assert "Кіріс" in page  # INBOX in Kazakh
        assert re.search(r'data-folder="INBOX">[^<]+</a> <strong class="unread"[^>]*>3</strong>', page), page
        subjects = re.findall(r'<span class="subject">([^<]+)</span>', page)
        assert [s.strip() for s in subjects] == ["Хат 2", "Хат 1", "Хат 0"]
        assert page.count('class="unseen"') == 3
        conn = imap(site)  # Thunderbird reads one: the web shows it read on the next page view
        try:
            conn.select("INBOX")
            conn.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        finally:
            conn.logout()
        page = c.get("/mail").text
        assert page.count('class="unseen"') == 2 and '<li class="seen" data-uid="1">' in page
        assert re.search(r'data-folder="INBOX">[^<]+</a> <strong class="unread"[^>]*>2</strong>', page)


def test_paging_is_bounded(site: Running) -> None:
    from esam_mail.services.mailflow.webmail import PAGE_SIZE

    conn = imap(site)
    try:
        for i in range(PAGE_SIZE + 5):
            conn.append("INBOX", "", None, plain(f"n{i:03d}"))
    finally:
        conn.logout()
    with browser(site) as c:
        login(c)
        first = c.get("/mail").text
        rows = re.findall(r'<span class="subject">\s*(n\d+)', first)
        assert len(rows) == PAGE_SIZE and rows[0] == f"n{PAGE_SIZE + 4:03d}"
        assert "Страница 1 из 2" in first
        second = c.get("/mail?page=2").text
        assert re.findall(r'<span class="subject">\s*(n\d+)', second) == [f"n{i:03d}" for i in range(4, -1, -1)]
        assert "Страница 2 из 2" in c.get("/mail?page=999").text  # clamped, not an error


def test_read_marks_seen_over_imap_sanitises_and_blocks_remote_images(site: Running) -> None:
    deliver(site, rich_message())
    assert "\\Seen" not in imap_flags(site)[1]
    with browser(site) as c:
        login(c)
        resp = c.get("/mail/message?folder=INBOX&uid=1")
        assert resp.status_code == 200
        page = resp.text
        assert "Есеп" in page and "Dana Sender" in page and "Айгерім" in page
        body = page.split('id="body">', 1)[1].split("</div>", 1)[0]
        for bad in ("<script", "onclick", "javascript:", "<style", "style=", 'id="login-form"', "tracker.example"):
            assert bad not in body, (bad, body)
        assert 'src="/mail/part?folder=INBOX&amp;uid=1&amp;part=' in body  # cid: image from the message itself
        assert "Удалённые изображения заблокированы" in page
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "https:" not in csp and "'unsafe-inline'" not in csp
        assert resp.headers["referrer-policy"] == "no-referrer"
        # switching the language comes back to this very message, not to a bare /mail/message
        switch = re.search(r'id="lang-kk" href="([^"]+)"', page).group(1).replace("&amp;", "&")
        back = c.get(switch)
        assert back.headers["location"] == "/mail/message?folder=INBOX&uid=1"
        assert 'lang="kk"' in c.get(back.headers["location"]).text[:200]
        # IMAP sees \Seen at once (same store, through the same mailbox service)
        assert "\\Seen" in imap_flags(site)[1]

        shown = c.get("/mail/message?folder=INBOX&uid=1&images=1")
        assert 'src="https://tracker.example/pixel.png"' in shown.text
        assert "img-src 'self' data: https: http:" in shown.headers["content-security-policy"]
        assert "<script" not in shown.text.split('id="body">', 1)[1].split("</div>", 1)[0]


def test_attachment_download_safe_name_and_headers(site: Running) -> None:
    deliver(site, rich_message())
    with browser(site) as c:
        login(c)
        page = c.get("/mail/message?folder=INBOX&uid=1").text
        links = re.findall(r'href="(/mail/part\?folder=INBOX&amp;uid=1&amp;part=(\d+))" download="([^"]+)"', page)
        pdf = [(h, n) for h, i, n in links if n.endswith(".pdf")]
        assert pdf, links
        href, name = pdf[0]
        assert "/" not in name and ".." not in name.split(" ")[0][:2]
        resp = c.get(href.replace("&amp;", "&"))
        assert resp.status_code == 200 and resp.content == b"%PDF-1.4 report"
        cd = resp.headers["content-disposition"]
        assert cd.startswith("attachment; filename=\"") and "filename*=UTF-8''" in cd
        assert "%D0%B5%D1%81%D0%B5%D0%BF" in cd and "/" not in cd.split("filename*=")[1]
        assert resp.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_bad_ids_unknown_folder_other_users_message(site: Running) -> None:
    deliver(site, plain("секрет Айгерім"))
    with browser(site) as c:
        login(c, "bolat")  # bolat has no message 1; aigerim's is not reachable by UID
        resp = c.get("/mail/message?folder=INBOX&uid=1")
        assert resp.status_code == 404 and "Такого письма в этой папке нет." in resp.text
        assert "секрет" not in resp.text
        assert c.get("/mail/part?folder=INBOX&uid=1&part=0").status_code == 404
        resp = c.get("/mail?folder=Nope")
        assert resp.status_code == 404 and "Такой папки нет." in resp.text
        for folder in ("../aigerim/INBOX", "../../etc", "/etc/passwd", "INBOX/../../aigerim"):
            assert c.get("/mail", params={"folder": folder}).status_code == 404
    with browser(site, "kk") as c:
        login(c)
        for part in ("../../etc/passwd", "-1", "99999", "1e3", ""):
            resp = c.get("/mail/part", params={"folder": "INBOX", "uid": "1", "part": part})
            assert resp.status_code == 404, part
            assert "Бұл хатта мұндай тіркеме жоқ." in resp.text
        assert c.get("/mail/message", params={"folder": "INBOX", "uid": "abc"}).status_code == 404


def test_search_subject_sender_body(site: Running) -> None:
    deliver(site, plain("Отчёт за июнь", "ничего"))
    deliver(site, plain("Другое", "в тексте есть слово КАЛАМ"))
    deliver(site, plain("Третье", "пусто"))
    with browser(site) as c:
        login(c)
        page = c.get("/mail", params={"q": "отчёт"}).text
        assert "Отчёт за июнь" in page and "Другое" not in page and "Найдено: 1" in page
        page = c.get("/mail", params={"q": "калам"}).text
        assert "Другое" in page and "Отчёт" not in page
        page = c.get("/mail", params={"q": "dana@other"}).text
        assert "Найдено: 3" in page
        assert c.get("/mail", params={"q": "x" * 5000}).status_code == 200  # bounded query


def test_move_delete_and_empty_trash_seen_over_imap(site: Running) -> None:
    deliver(site, plain("раз"))
    deliver(site, plain("два"))
    with browser(site) as c:
        csrf = login(c)
        resp = c.post("/mail/move", data={"csrf_token": csrf, "folder": "INBOX", "uid": "1", "dest": "Archive"})
        assert resp.status_code == 303
        assert imap_count(site, "INBOX") == 1 and imap_count(site, "Archive") == 1
        resp = c.post("/mail/move", data={"csrf_token": csrf, "folder": "INBOX", "uid": "2", "dest": "Nowhere"})
        assert resp.status_code == 404 and imap_count(site, "INBOX") == 1  # nothing moved
        resp = c.post("/mail/delete", data={"folder": "INBOX", "uid": "2"})  # no token
        assert resp.status_code == 403 and imap_count(site, "INBOX") == 1
        resp = c.post("/mail/delete", data={"csrf_token": csrf, "folder": "INBOX", "uid": "2"})
        assert resp.status_code == 303
        assert imap_count(site, "INBOX") == 0 and imap_count(site, "Trash") == 1
        resp = c.post("/mail/trash/empty", data={"csrf_token": csrf})
        assert resp.status_code == 303 and imap_count(site, "Trash") == 0
        assert imap_count(site, "Archive") == 1


# --------------------------------------------------------------------------- composing


def imap_messages(r: Running, folder: str, user: str = "aigerim") -> list[tuple[str, bytes]]:
    """(flags, whole message) of every message in ``folder``, over IMAP."""
    conn = imap(r, user)
    try:
        conn.select(folder)
        _typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                m = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                out.append(((m.group(1) if m else b"").decode(), item[1]))
        return out
    finally:
        conn.logout()


def compose(c: httpx.Client, csrf: str, files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
            **fields: str) -> httpx.Response:
    data = {"csrf_token": csrf, "action": "send", **fields}
    return c.post("/mail/compose", data=data, files=files or None)


def test_send_local_with_attachment_dkim_and_sent_copy(site: Running) -> None:
    with browser(site) as c:
        csrf = login(c)
        resp = compose(c, csrf, files=[("attachments", ("отчёт.txt", "привет".encode(), "text/plain"))],
                       to="Bolat <bolat@esam.test>", subject="Сәлем, Болат", body="Мәтін\nекінші жол")
        assert resp.status_code == 303 and "done=sent" in resp.headers["location"], resp.text[-2000:]
    inbox = imap_messages(site, "INBOX", "bolat")
    assert len(inbox) == 1
    got = email.message_from_bytes(inbox[0][1], policy=email.policy.default)
    assert got["From"].addresses[0].addr_spec == "aigerim@esam.test"
    assert str(got["Subject"]) == "Сәлем, Болат"
    assert got["DKIM-Signature"] is not None and "d=esam.test" in str(got["DKIM-Signature"])
    assert got.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n").startswith("Мәтін\nекінші жол")
    att = next(got.iter_attachments())
    assert att.get_filename() == "отчёт.txt" and att.get_content() == "привет".encode()
    sent = imap_messages(site, "Sent")
    assert len(sent) == 1 and "\\Seen" in sent[0][0]
    assert "Bcc" not in email.message_from_bytes(sent[0][1])


def test_send_remote_goes_to_the_outbound_queue_signed(site: Running) -> None:
    with browser(site) as c:
        csrf = login(c)
        resp = compose(c, csrf, to="dana@other.test", bcc="bolat@esam.test", subject="Hi", body="text")
        assert resp.status_code == 303, resp.text[-2000:]
    entries = site.services.spool.list()
    assert [e.mail_from for e in entries] == ["aigerim@esam.test"]
    assert [r.address for r in entries[0].pending()] == ["dana@other.test"]
    queued = site.services.spool.read_message(entries[0].id)
    assert b"DKIM-Signature:" in queued and b"bolat@esam.test" not in queued.split(b"\r\n\r\n")[0].split(b"DKIM")[0]
    assert b"\nBcc:" not in queued
    assert len(imap_messages(site, "INBOX", "bolat")) == 1  # the Bcc recipient got it locally


def test_compose_problems_next_to_fields_nothing_sent(site: Running) -> None:
    with browser(site) as c:
        csrf = login(c)
        resp = compose(c, csrf, to="", subject="x", body="y")
        assert resp.status_code == 400
        assert 'id="to-error"' in resp.text and "Укажите хотя бы одного получателя." in resp.text
        assert 'value="x"' in resp.text and ">y</textarea>" in resp.text  # what was typed stays
        resp = compose(c, csrf, to="nobody@esam.test, bolat@esam.test", cc="not an address", subject="s", body="b")
        assert resp.status_code == 400
        assert "Такого почтового ящика нет: nobody@esam.test" in resp.text.split('id="to-error"', 1)[1][:300]
        assert 'id="cc-error"' in resp.text and "Это не адрес электронной почты" in resp.text
        resp = compose(c, csrf, to="bolat@esam.test", subject="x\r\nBcc: dana@other.test", body="b")
        assert resp.status_code == 400 and 'id="subject-error"' in resp.text
        resp = compose(c, csrf, to="bolat@esam.test\r\nBcc: dana@other.test", subject="s", body="b")
        assert resp.status_code == 400 and "Уберите специальные символы." in resp.text.split('id="to-error"', 1)[1][:200]
        many = ", ".join(f"u{i}@other.test" for i in range(6))
        resp = compose(c, csrf, to=many, subject="s", body="b")
        assert resp.status_code == 400 and "Слишком много получателей: не более 5." in resp.text
        resp = c.post("/mail/compose", data={"to": "bolat@esam.test", "subject": "s", "body": "b", "action": "send"})
        assert resp.status_code == 403  # no CSRF token
    with browser(site, "kk") as c:
        csrf = login(c)
        resp = compose(c, csrf, to="bolat@esam.test", subject="үлкен", body="b",
                       files=[("attachments", ("big.bin", b"\x00" * (180 * 1024), "application/octet-stream"))])
        assert resp.status_code == 400
        error = resp.text.split('id="attachments-error"', 1)[1][:300]
        assert "Хат тым үлкен" in error and "шегі 0.2 МБ" in error
        resp = compose(c, csrf, to="bolat@esam.test", subject="үлкен", body="b",
                       files=[("attachments", ("huge.bin", b"\x00" * (1400 * 1024), "application/octet-stream"))])
        assert resp.status_code == 413  # beyond the form's cap: refused before it is read
    assert imap_messages(site, "INBOX", "bolat") == [] and imap_messages(site, "Sent") == []
    assert site.services.spool.list() == []


def test_reply_sets_threading_and_answered_forward_keeps_attachments(site: Running) -> None:
    deliver(site, rich_message(to="aigerim@esam.test"))
    with browser(site) as c:
        csrf = login(c)
        page = c.get("/mail/compose", params={"mode": "reply", "folder": "INBOX", "uid": "1"}).text
        assert 'value="dana@other.test"' in page and 'value="Re: Есеп"' in page
        assert 'name="in_reply_to" value="&lt;rich-1@other.test&gt;"' in page and "&gt; Сәлем! Plain part." in page
        assert "\\Seen" not in imap_flags(site)[1]  # opening the reply form is not reading
        resp = compose(c, csrf, to="bolat@esam.test", subject="Re: Есеп", body="ok",
                       in_reply_to="<rich-1@other.test>", references="<rich-1@other.test>",
                       answers_folder="INBOX", answers_uid="1")
        assert resp.status_code == 303
        assert "\\Answered" in imap_flags(site)[1]
        got = email.message_from_bytes(imap_messages(site, "INBOX", "bolat")[0][1], policy=email.policy.default)
        assert got["In-Reply-To"] == "<rich-1@other.test>"

        page = c.get("/mail/compose", params={"mode": "forward", "folder": "INBOX", "uid": "1"}).text
        assert 'value="Fwd: Есеп"' in page
        keep = re.findall(r'name="keep" value="(\d+)" checked', page)
        assert keep, page
        resp = compose(c, csrf, to="bolat@esam.test", subject="Fwd: Есеп", body="see", source_folder="INBOX",
                       source_uid="1", keep=keep)
        assert resp.status_code == 303
    fwd = email.message_from_bytes(imap_messages(site, "INBOX", "bolat")[1][1], policy=email.policy.default)
    names = sorted(a.get_filename() or "" for a in fwd.iter_attachments())
    assert any(n.endswith(".pdf") for n in names), names
    pdf = next(a for a in fwd.iter_attachments() if (a.get_filename() or "").endswith(".pdf"))
    assert pdf.get_content() == b"%PDF-1.4 report"


def test_draft_save_reopen_replace_and_send(site: Running) -> None:
    with browser(site) as c:
        csrf = login(c)
        resp = c.post("/mail/compose", data={"csrf_token": csrf, "action": "save", "to": "bolat@esam.test",
                                             "bcc": "dana@other.test", "subject": "Жоба", "body": "бірінші"},
                      files=[("attachments", ("a.txt", b"AAA", "text/plain"))])
        assert resp.status_code == 303 and "mode=draft" in resp.headers["location"]
        drafts = imap_messages(site, "Drafts")
        assert len(drafts) == 1 and "\\Draft" in drafts[0][0]
        page = c.get(resp.headers["location"]).text
        assert "Черновик сохранён." in page
        assert 'value="Жоба"' in page, page[page.find("<form"):][:3000]
        assert ">бірінші</textarea>" in page and 'value="dana@other.test"' in page
        draft_uid = re.search(r'name="draft_uid" value="(\d+)"', page).group(1)
        keep = re.findall(r'name="keep" value="(\d+)" checked', page)
        assert len(keep) == 1
        listing = c.get("/mail", params={"folder": "Drafts"}).text
        assert "mode=draft" in listing
        resp = c.post("/mail/compose", data={"csrf_token": csrf, "action": "save", "to": "bolat@esam.test",
                                             "subject": "Жоба 2", "body": "екінші", "draft_uid": draft_uid,
                                             "source_folder": "Drafts", "source_uid": draft_uid, "keep": keep})
        assert resp.status_code == 303
        drafts = imap_messages(site, "Drafts")
        assert len(drafts) == 1  # the draft was replaced, not added
        redone = email.message_from_bytes(drafts[0][1], policy=email.policy.default)
        assert str(redone["Subject"]) == "Жоба 2" and [a.get_content() for a in redone.iter_attachments()] == [b"AAA"]
        page = c.get(resp.headers["location"]).text
        draft_uid = re.search(r'name="draft_uid" value="(\d+)"', page).group(1)
        keep = re.findall(r'name="keep" value="(\d+)" checked', page)
        resp = compose(c, csrf, to="bolat@esam.test", subject="Жоба 2", body="екінші", draft_uid=draft_uid,
                       source_folder="Drafts", source_uid=draft_uid, keep=keep)
        assert resp.status_code == 303
    assert imap_messages(site, "Drafts") == []
    got = email.message_from_bytes(imap_messages(site, "INBOX", "bolat")[0][1], policy=email.policy.default)
    assert str(got["Subject"]) == "Жоба 2" and [a.get_content() for a in got.iter_attachments()] == [b"AAA"]


def test_hostile_mime_nesting_and_many_parts_answer_quickly(site: Running) -> None:
    import time

    deep = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(2000))
    nested = (f"From: dana@other.test\r\nTo: aigerim@esam.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n{deep}"
              "Content-Type: text/plain\r\n\r\ninnermost\r\n").encode()
    parts = "".join(f"--P\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                    f"filename=f{i}.bin\r\n\r\nx\r\n" for i in range(3000))
    many = (f"From: dana@other.test\r\nTo: aigerim@esam.test\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=P\r\n\r\n{parts}--P--\r\n").encode()
    conn = imap(site)
    try:
        conn.append("INBOX", "", None, nested)
        conn.append("INBOX", "", None, many)
    finally:
        conn.logout()
    with browser(site) as c:
        login(c)
        for uid in (1, 2):
            started = time.monotonic()
            resp = c.get("/mail/message", params={"folder": "INBOX", "uid": str(uid)})
            assert resp.status_code == 200 and time.monotonic() - started < 5
            assert f"<h1 id=\"subject\">{('deep', 'many')[uid - 1]}</h1>" in resp.text  # headers still shown
            assert 'href="/mail/part?' not in resp.text  # too complex to take apart: raw text only
        assert c.get("/mail/part", params={"folder": "INBOX", "uid": "1", "part": "1999"}).status_code == 404
        started = time.monotonic()
        page = c.get("/mail", params={"q": "innermost"}).text
        assert "Найдено: 1" in page and time.monotonic() - started < 5
