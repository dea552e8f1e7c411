"""``/mail``: the webmail, for subscribers without a mail client.

It logs in through the personal account's session (``/account/login``: the same
password check, brute-force lock-out, session rotation and expiry) and reads the same
store as IMAP through :mod:`esam_mail.services.mailflow.webmail` (itself on the async mailbox
service), so what is read, moved or deleted here is so in Thunderbird at once.

Pages (every text in the ``webmail`` catalogue, every form with the CSRF token):

* ``GET /mail?folder=&page=&q=``: folders with unread counts, the folder's messages
  newest first (bounded pages), or the search hits;
* ``GET /mail/message?folder=&uid=[&images=1]``: a message, HTML sanitised and shown
  inline under a strict Content-Security-Policy (no script at all; remote images only
  after the reader asks, and then only images);
* ``GET /mail/part?folder=&uid=&part=``: an attachment, ``Content-Disposition:
  attachment`` with an RFC 6266/5987 file name, never rendered by the browser;
* ``GET/POST /mail/compose`` (new, ``reply``, ``reply_all``, ``forward``, ``draft``):
  send through the submission path or save as a draft; problems stand next to their
  field in the reader's language and nothing is sent or stored;
* ``POST /mail/move``, ``/mail/delete``, ``/mail/trash/empty``.
"""

from __future__ import annotations

import asyncio
import functools
import unicodedata
from typing import Any
from urllib.parse import quote, urlencode

from starlette.responses import RedirectResponse, StreamingResponse

from esam_mail.errors import NoSuchFolder
from esam_mail.i18n import N_, Translator
from esam_mail.services.auth import Principal
from esam_mail.services.mailflow.mailboxes import MailboxService
from esam_mail.services.mailflow.webmail import (
    PAGE_SIZE,
    ComposeProblems,
    Outgoing,
    Upload,
    Webmail,
    sanitize_html,
)
from esam_mail.web.account import current_profile
from esam_mail.web.i18n import lang_of
from esam_mail.web.security import read_form
from esam_mail.web.server import CSP, Request, Response, Router, peer
from esam_mail.web.templating import render as render_page

__all__ = ["DOMAIN", "register", "webmail_service"]

DOMAIN = "webmail"
MAX_FILES = 20
#: Types an attachment is served as; anything else is application/octet-stream.
SAFE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain",
              "application/zip", "application/msword", "application/vnd.ms-excel",
              "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv"}
INLINE_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
PART_CSP = "default-src 'none'; sandbox"
W_ = N_  # marks texts of the ``webmail`` catalogue (``N_`` here would mean the ``web`` one)
FOLDER_NAMES = {
    "INBOX": W_("Inbox"), "Sent": W_("Sent"), "Drafts": W_("Drafts"), "Trash": W_("Trash"),
    "Junk": W_("Junk"), "Archive": W_("Archive"),
}


def webmail_service(services: Any) -> Webmail:
    """One per process, on its own mailbox service (the store's notifier tells IMAP)."""
    svc = services.extras.get("webmail")
    if svc is None:
        mailboxes = services.extras.get("mailboxes")
        if mailboxes is None:
            mailboxes = services.extras["mailboxes"] = MailboxService(services.store, services.notifier)
        cfg = services.cfg
        svc = services.extras["webmail"] = Webmail(
            mailboxes, services.delivery, max_message_size=cfg.smtp.max_message_size,
            max_recipients=cfg.smtp.max_recipients, hostname=cfg.server.hostname,
        )
    return svc


def translator(request: Request) -> Translator:
    return Translator(DOMAIN, lang_of(request))


def render(request: Request, name: str, context: dict[str, Any], *, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    t = translator(request)

    def folder_label(name: str) -> str:
        return t(FOLDER_NAMES[name]) if name in FOLDER_NAMES else name

    return render_page(request, name, {"t": t, "folder_label": folder_label, **context}, status=status,
                       headers=headers)


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266 with an ASCII fallback and the UTF-8 name per RFC 5987."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = "".join(c for c in ascii_name if c.isprintable() and c not in '"\\;') or "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _int(value: Any, default: int = 0, *, lo: int = 0, hi: int = 2**31) -> int:
    try:
        n = int(str(value))
    except (TypeError, ValueError):
        return default
    return n if lo <= n <= hi else default


def _url(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "", 0)}
    return f"{path}?{urlencode(clean)}" if clean else path


def register(router: Router, services: Any) -> None:
    cfg = services.cfg

    def mail() -> Webmail:  # built on first use (start-up builds no pool for a site without mail)
        return webmail_service(services)

    # the compose form carries attachments: up to the SMTP message size plus the form
    router.allow_body("/mail/compose", cfg.smtp.max_message_size + 1024 * 1024)

    async def principal_of(request: Request) -> tuple[Principal, Any] | None:
        profile = await current_profile(request, services)
        if profile is None:
            return None
        return Principal(profile.login, profile.address, profile.quota_bytes), profile

    def to_login() -> Response:
        return RedirectResponse("/account/login", status_code=303)

    def not_found(request: Request, what: str) -> Response:
        t = translator(request)
        text = {"folder": t("There is no such folder."), "message": t("There is no such message in this folder."),
                "part": t("This message has no such attachment.")}[what]
        return render(request, "mail_missing.html", {"text": text}, status=404)

    async def sidebar(principal: Principal) -> list[Any]:
        return await mail().folders(principal)

    # -- list and search ----------------------------------------------------------------------

    async def index(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, profile = who
        q = request.query_params
        folder = q.get("folder", "INBOX")[:500]
        query = q.get("q", "")[:200]
        try:
            if query.strip():
                listing = await mail().search(principal, folder, query)
            else:
                listing = await mail().listing(principal, folder, _int(q.get("page"), 1, lo=1), PAGE_SIZE)
        except NoSuchFolder:
            return not_found(request, "folder")
        return render(request, "mail_list.html", {
            "profile": profile, "folders": await sidebar(principal), "listing": listing,
            "folder": folder, "query": query, "notice": q.get("done", ""), "url": _url,
        })

    # -- reading ------------------------------------------------------------------------------

    async def message(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, profile = who
        q = request.query_params
        folder = q.get("folder", "INBOX")[:500]
        uid = _int(q.get("uid"), 0, lo=1)
        images = q.get("images") == "1"
        try:
            msg = await mail().read(principal, folder, uid) if uid else None
        except NoSuchFolder:
            return not_found(request, "folder")
        if msg is None:
            return not_found(request, "message")
        cids = {p.content_id: p.index for p in msg.parts if p.content_id}

        def cid_url(cid: str) -> str | None:
            index = cids.get(cid.strip("<>"))
            return None if index is None else _url("/mail/part", folder=folder, uid=uid, part=index, inline=1)

        html = blocked = None
        if msg.html is not None:
            # up to a megabyte of HTML: sanitised off the loop
            html, blocked = await asyncio.to_thread(
                functools.partial(sanitize_html, msg.html, images=images, cid_url=cid_url))
        csp = CSP
        if images:  # the reader asked: remote images, nothing else
            csp = CSP.replace("img-src 'self' data:", "img-src 'self' data: https: http:")
        folders = await sidebar(principal)
        return render(request, "mail_read.html", {
            "profile": profile, "folders": folders, "msg": msg, "html": html, "blocked": blocked,
            "images": images, "folder": folder, "url": _url, "notice": q.get("done", ""),
        }, headers={"content-security-policy": csp, "referrer-policy": "no-referrer"})

    async def part(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, _ = who
        q = request.query_params
        folder = q.get("folder", "INBOX")[:500]
        uid = _int(q.get("uid"), 0, lo=1)
        index = _int(q.get("part"), -1, lo=0, hi=10000)
        if not uid or index < 0:
            return not_found(request, "part")
        try:
            got = await mail().part(principal, folder, uid, index)
        except NoSuchFolder:
            return not_found(request, "folder")
        if got is None:
            return not_found(request, "part")
        inline = q.get("inline") == "1" and got.ctype in INLINE_IMAGES
        served = got.ctype if got.ctype in SAFE_TYPES else "application/octet-stream"
        headers = {
            "content-disposition": content_disposition("inline" if inline else "attachment", got.filename),
            "content-security-policy": PART_CSP, "cache-control": "private, no-store",
        }
        if got.size is not None:
            headers["content-length"] = str(got.size)
        if request.method == "HEAD":
            got.close()
            return Response(b"", media_type=served, headers=headers)
        # decoded as the client reads: one block in memory, never the whole attachment
        return StreamingResponse(got.chunks(), media_type=served, headers=headers)

    # -- moving and deleting ------------------------------------------------------------------

    async def move(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, _ = who
        form = await read_form(request)
        folder = str(form.get("folder", ""))[:500]
        dest = str(form.get("dest", ""))[:500]
        uid = _int(form.get("uid"), 0, lo=1)
        try:
            moved = await mail().move(principal, folder, [uid], dest) if uid else 0
        except NoSuchFolder:
            return not_found(request, "folder")
        if not moved:
            return not_found(request, "message")
        return RedirectResponse(_url("/mail", folder=folder, done="moved"), status_code=303)

    async def delete(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, _ = who
        form = await read_form(request)
        folder = str(form.get("folder", ""))[:500]
        uid = _int(form.get("uid"), 0, lo=1)
        try:
            n = await mail().delete(principal, folder, [uid]) if uid else 0
        except NoSuchFolder:
            return not_found(request, "folder")
        if not n:
            return not_found(request, "message")
        return RedirectResponse(_url("/mail", folder=folder, done="deleted"), status_code=303)

    async def empty_trash(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, _ = who
        await read_form(request)
        try:
            await mail().empty_trash(principal)
        except NoSuchFolder:
            return not_found(request, "folder")
        return RedirectResponse(_url("/mail", folder="Trash", done="emptied"), status_code=303)

    # -- composing ----------------------------------------------------------------------------

    def compose_page(request: Request, profile: Any, folders: list[Any], out: Outgoing,
                     errors: dict[str, str], kept: list[Any], status: int = 200) -> Response:
        return render(request, "mail_compose.html", {
            "profile": profile, "folders": folders, "out": out, "errors": errors, "kept": kept,
            "max_size": cfg.smtp.max_message_size, "max_mb": f"{cfg.smtp.max_message_size / 1048576:.0f}",
            "max_files": MAX_FILES, "folder": "", "url": _url,
        }, status=status)

    async def compose(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, profile = who
        t = translator(request)
        q = request.query_params
        mode = q.get("mode", "")
        folder = q.get("folder", "INBOX")[:500]
        uid = _int(q.get("uid"), 0, lo=1)
        out = Outgoing(to=q.get("to", "")[:2000])
        kept: list[Any] = []
        if mode in ("reply", "reply_all", "forward", "draft"):
            try:
                msg = await mail().read(principal, folder, uid, mark_seen=False) if uid else None
            except NoSuchFolder:
                return not_found(request, "folder")
            if msg is None:
                return not_found(request, "message")
            when = msg.date.strftime("%Y-%m-%d %H:%M") if msg.date else ""
            if mode in ("reply", "reply_all"):
                out = await asyncio.to_thread(functools.partial(
                    Webmail.reply_form, msg, principal.address, all_=mode == "reply_all",
                    quote_header=t("On {date}, {sender} wrote:", date=when, sender=msg.sender)))
            elif mode == "forward":
                intro = t("-------- Forwarded message --------") + "\n" + "\n".join(
                    f"{k}: {v}" for k, v in ((t("From"), msg.sender), (t("Date"), when), (t("Subject"), msg.subject),
                                             (t("To"), msg.to)) if v)
                out = await asyncio.to_thread(Webmail.forward_form, msg, intro)
                kept = msg.parts
            elif folder == "Drafts":
                out = await asyncio.to_thread(Webmail.draft_form, msg, await mail().draft_bcc(principal, uid))
                kept = msg.parts
        return compose_page(request, profile, await sidebar(principal), out, {}, kept)

    async def compose_post(request: Request) -> Response:
        who = await principal_of(request)
        if who is None:
            return to_login()
        principal, profile = who
        t = translator(request)
        form = await read_form(request, max_files=MAX_FILES)
        uploads: list[Upload] = []
        for item in form.getlist("attachments"):
            if isinstance(item, str) or not getattr(item, "filename", ""):
                continue
            data = await item.read()
            uploads.append(Upload(item.filename or "attachment", item.content_type or "application/octet-stream",
                                  data))
        answers_folder = str(form.get("answers_folder", ""))[:500]
        answers_uid = _int(form.get("answers_uid"), 0, lo=1)
        out = Outgoing(
            to=str(form.get("to", ""))[:20000], cc=str(form.get("cc", ""))[:20000],
            bcc=str(form.get("bcc", ""))[:20000], subject=str(form.get("subject", ""))[:2000],
            body=str(form.get("body", "")), uploads=uploads,
            in_reply_to=str(form.get("in_reply_to", ""))[:1000], references=str(form.get("references", ""))[:4000],
            source_folder=str(form.get("source_folder", ""))[:500], source_uid=_int(form.get("source_uid"), 0, lo=1),
            keep=[_int(k, -1, lo=0, hi=10000) for k in form.getlist("keep")][:100],
            draft_uid=_int(form.get("draft_uid"), 0, lo=1),
            answers=(answers_folder, answers_uid) if answers_folder and answers_uid else None,
        )
        out.keep = [k for k in out.keep if k >= 0]
        action = str(form.get("action", "send"))
        try:
            if action == "save":
                uid = await mail().save_draft(principal, out, display_name=profile.display_name)
                return RedirectResponse(_url("/mail/compose", mode="draft", folder="Drafts", uid=uid, done="saved"),
                                        status_code=303)
            await mail().send(principal, out, display_name=profile.display_name, peer=peer(request),
                            tls=request.url.scheme == "https")
        except ComposeProblems as exc:
            errors = {name: t(msgid, **params) for name, (msgid, params) in exc.problems.items()}
            if uploads and "attachments" not in errors:
                errors["attachments"] = t("Attach the files again: a browser does not keep them.")
            kept: list[Any] = []
            if out.keep and out.source_uid:
                try:
                    src = await mail().read(principal, out.source_folder, out.source_uid, mark_seen=False)
                except NoSuchFolder:
                    src = None
                kept = [p for p in (src.parts if src else []) if p.index in out.keep]
            out.uploads = []
            return compose_page(request, profile, await sidebar(principal), out, errors, kept, status=400)
        except NoSuchFolder:
            return not_found(request, "folder")
        return RedirectResponse(_url("/mail", folder="Sent", done="sent"), status_code=303)

    router.add("GET", "/mail", index)
    router.add("GET", "/mail/message", message)
    router.add("GET", "/mail/part", part)
    router.add("POST", "/mail/move", move)
    router.add("POST", "/mail/delete", delete)
    router.add("POST", "/mail/trash/empty", empty_trash)
    router.add("GET", "/mail/compose", compose)
    router.add("POST", "/mail/compose", compose_post)
