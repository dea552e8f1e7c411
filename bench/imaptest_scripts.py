"""Run Dovecot imaptest's *scripted* IMAP tests against any IMAP server.

Our own runner for the scripted-test format of Dovecot's imaptest (the C tool is not packaged in
Debian).  The tests themselves are third-party text files and are NOT part of this repository:
take them from the imaptest source tree (``src/tests/`` of https://github.com/dovecot/imaptest,
one file per test group plus optional ``<name>.mbox`` fixtures and ``default.mbox``) and keep them
outside the repository, e.g. in ``/var/tmp/imaptest-tests/``.

Semantics follow imaptest's ``docs/scripted_test.md`` and ``src/test-parser.c`` / ``test-exec.c``:

* header (``capabilities:``, ``connections:``, ``state:``, ``messages:``,
  ``ignore_extra_untagged:``), blank line, then commands;
* command forms ``[conn] ok|no|bad|"" cmd`` (method 1), ``cmd`` ... ``ok [prefix]`` (method 2),
  ``[conn] tagN cmd`` ... ``tagN ok`` (pipelining);
* untagged expectations ``* ...`` (must exist), ``! ...`` (must not), ``? ...`` (may);
* ``{{{`` ... ``}}}`` multi-line literals (``~{{{`` for literal8), ``$var`` / ``${var}`` captured
  from the first matching reply, ``$`` wildcard, ``$]``, ``$N`` relative sequences (follow EXPUNGEs),
  ``$modseqN``, ``${case:..}``, list directives ``$!unordered[=n]``, ``$!noextra``, ``$!extra``,
  ``$!ignore=``, ``$!ban=`` with imaptest's defaults for FETCH, FLAGS, LIST/LSUB and STATUS;
* per test a fresh test mailbox (``--box``, default ``imaptest``): LIST/LSUB ``box*`` -> DELETE and
  UNSUBSCRIBE, CREATE, APPEND the messages of ``<name>.mbox`` (or ``default.mbox``), SELECT;
  ``append`` without a message body appends the next mbox message.

Usage::

    python bench/imaptest_scripts.py --tests /var/tmp/imaptest-tests --host 127.0.0.1 --port 143 \\
        --user testuser --password secret [--tls] [--only fetch,copy] [-v]

It prints one line per test group (pass / FAIL / skip) and a closing count line.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Arg = tuple  # ("atom"|"string"|"literal", str) | ("nil",) | ("list", list[Arg])

STATES = ["nonauth", "auth", "created", "appended", "selected"]


class TestFailed(Exception):
    pass


class TestSkipped(Exception):
    pass


# ---------------------------------------------------------------- IMAP argument parsing

def parse_args(data: bytes) -> list[Arg]:
    """Parse an IMAP line (literals inline as ``{N}\\r\\n<bytes>``) into a list of args."""
    pos = 0
    n = len(data)
    stack: list[list[Arg]] = [[]]
    while pos < n:
        c = data[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif c == b"(":
            stack.append([])
            pos += 1
        elif c == b")":
            pos += 1
            if len(stack) > 1:
                lst = stack.pop()
                stack[-1].append(("list", lst))
        elif c == b'"':
            pos += 1
            out = bytearray()
            while pos < n and data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\" and pos + 1 < n:
                    pos += 1
                out += data[pos:pos + 1]
                pos += 1
            pos += 1
            stack[-1].append(("string", out.decode("utf-8", "replace")))
        elif (c == b"{" or (c == b"~" and data[pos + 1:pos + 2] == b"{")) and \
                (m := re.match(rb"~?\{(\d+)\+?\}\r?\n", data[pos:])):
            size = int(m.group(1))
            start = pos + m.end()
            stack[-1].append(("literal", data[start:start + size].decode("utf-8", "replace")))
            pos = start + size
        else:
            start = pos
            while pos < n and data[pos:pos + 1] not in (b" ", b"(", b")", b"\r", b"\n"):
                pos += 1
            atom = data[start:pos].decode("utf-8", "replace")
            stack[-1].append(("nil",) if atom.upper() == "NIL" else ("atom", atom))
    while len(stack) > 1:
        lst = stack.pop()
        stack[-1].append(("list", lst))
    return stack[0]


def astring(a: Arg) -> str | None:
    return a[1] if a[0] in ("atom", "string", "literal") else None


def args_str(args: list[Arg]) -> str:
    out = []
    for a in args:
        if a[0] == "list":
            out.append("(" + args_str(a[1]) + ")")
        elif a[0] == "nil":
            out.append("NIL")
        elif a[0] == "atom":
            out.append(a[1])
        else:
            s = a[1]
            out.append('"' + (s if len(s) < 60 else s[:57] + "...").replace("\r\n", "\\r\\n") + '"')
    return " ".join(out)


# ---------------------------------------------------------------- test file parsing

@dataclass
class Command:
    line: int
    text: bytes
    tag: int = 0
    reply: list[Arg] | None = None
    sent_tag: str = ""


@dataclass
class Untagged:
    args: list[Arg]
    existence: str  # "*" must, "!" must not, "?" may


@dataclass
class Group:
    conn: int = 0
    commands: list[Command] = field(default_factory=list)
    untagged: list[Untagged] = field(default_factory=list)
    pending: int = 0
    ordered: bool = False
    sleep: float = 0.0
    bye: bool = False


@dataclass
class Test:
    name: str
    path: Path
    mbox: Path
    caps: list[str] = field(default_factory=list)
    connections: int = 1
    state: str = "selected"
    messages: int | None = None  # None = all
    ignore_extra: bool = True
    groups: list[Group] = field(default_factory=list)


REPLY_OK: list[Arg] = [("atom", "ok")]
REPLY_NO: list[Arg] = [("atom", "no")]
REPLY_BAD: list[Arg] = [("atom", "bad")]
REPLY_ANY: list[Arg] = [("atom", "")]


def _get_cmd_reply(line: str) -> tuple[list[Arg] | None, int, str]:
    tag = 0
    first = line.split(" ", 1)[0]
    if first.lower().startswith("tag") and " " in line and first[3:].isdigit() and int(first[3:]) > 0:
        tag = int(first[3:])
        line = line.split(" ", 1)[1]
        first = line.split(" ", 1)[0]
    reply = None
    fl = first.lower()
    if fl == "ok":
        reply, line = REPLY_OK, line[2:]
    elif fl == "no":
        reply, line = REPLY_NO, line[2:]
    elif fl == "bad":
        reply, line = REPLY_BAD, line[3:]
    elif first == '""':
        reply, line = REPLY_ANY, line[2:]
    if reply is not None and line.startswith(" "):
        line = line[1:]
    return reply, tag, line


def _add_default_directives(args: list[Arg], reply_name: str, depth_path: list[tuple[int, str | None]]) -> None:
    """imaptest's default list directives; ``depth_path`` is [(index in parent, prev atom), ...]."""
    name = reply_name.lower()
    if len(depth_path) == 1:
        idx, _ = depth_path[0]
        if name in ("list", "lsub") and idx == 1:
            args.insert(0, ("atom", "$!unordered"))
        elif (name == "status" and idx == 2) or (name == "fetch" and idx == 2):
            args.insert(0, ("atom", "$!unordered=2"))
    elif len(depth_path) == 2 and name == "fetch":
        (idx0, _), (_, prev) = depth_path
        if idx0 == 2 and prev == "flags":
            for d in ("$!ignore=$HasNoAttachment", "$!ignore=$HasAttachment", "$!ignore=\\recent",
                      "$!noextra", "$!unordered"):
                args.insert(0, ("atom", d))


def _has_directives(args: list[Arg]) -> bool:
    return bool(args) and args[0][0] == "atom" and args[0][1].startswith("$!")


def _walk_directives(args: list[Arg], reply_name: str, path: list[tuple[int, str | None]]) -> None:
    if path and not _has_directives(args):
        _add_default_directives(args, reply_name, path)
    prev: str | None = None
    for i, a in enumerate(args):
        if a[0] == "atom":
            prev = a[1].lower()
        if a[0] == "list":
            _walk_directives(a[1], reply_name, [*path, (i, prev)])


def parse_untagged(text: bytes, existence: str) -> Untagged:
    args = parse_args(text)
    name = ""
    if args and args[0][0] == "atom":
        name = args[0][1]
        if name[:1] == "$" or name[:1].isdigit():
            name = args[1][1] if len(args) > 1 and args[1][0] == "atom" else ""
    _walk_directives(args, name, [])
    return Untagged(args, existence)


def parse_test(path: Path, default_mbox: Path) -> Test:
    mbox = Path(str(path) + ".mbox")
    test = Test(name=path.name, path=path, mbox=mbox if mbox.exists() else default_mbox)
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    header = True
    group: Group | None = None
    skip_stack: list[tuple[bool, bool]] = []
    skip = False
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i]
        i += 1
        if line.endswith(b"{{{"):
            # multi-line literal(s): collect until "}}}"; a following "}}} ... {{{" continues
            buf = bytearray()
            cur = line
            while True:
                binary = cur.endswith(b"~{{{")
                buf += cur[:-4] if binary else cur[:-3]
                start = len(buf)
                body: list[bytes] = []
                while i < len(lines) and not lines[i].startswith(b"}}}"):
                    body.append(lines[i])
                    i += 1
                if i >= len(lines):
                    raise ValueError(f"{path}: multiline at line {lineno} not ended")
                end_line = lines[i][3:]
                i += 1
                sep = b"\n" if binary else b"\r\n"
                content = sep.join(ln.rstrip(b"\r") if not binary else ln for ln in body)
                buf[start:] = (b"~" if binary else b"") + b"{%d}\r\n" % len(content) + content
                if end_line.endswith(b"{{{"):
                    cur = end_line
                    continue
                buf += end_line
                break
            line = bytes(buf)
        if not header and line == b"":
            continue
        if header:
            if line == b"":
                header = False
                continue
            if line.startswith(b"#"):
                continue
            key, _, value = line.decode().partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "capabilities":
                test.caps = value.split()
            elif key == "connections":
                test.connections = int(value)
            elif key == "state":
                test.state = {"auth": "auth"}.get(value.lower(), value.lower())
            elif key == "messages":
                test.messages = None if value == "all" else int(value)
            elif key == "ignore_extra_untagged":
                test.ignore_extra = value[:1] == "y"
            else:
                raise ValueError(f"{path} line {lineno}: unknown setting {key}")
            continue
        if line.startswith(b"#"):
            continue
        s = line.decode("utf-8", "replace")
        if s.startswith("!ifenv ") or s.startswith("!ifnenv "):
            have = os.environ.get(s.split(" ", 1)[1]) is not None
            if s.startswith("!ifnenv "):
                have = not have
            skip_stack.append((skip, False))
            if not have:
                skip = True
            continue
        if s == "!else":
            outer, _ = skip_stack[-1]
            skip_stack[-1] = (outer, True)
            if not outer:
                skip = not skip
            continue
        if s == "!endif":
            skip, _ = skip_stack.pop()
            continue
        if skip:
            continue
        if group is not None:
            if s.startswith("!sleep "):
                group.sleep = float(re.sub(r"[^0-9.]", "", s[7:]) or 0) / (1000 if "ms" in s else 1)
                continue
            if s.startswith("!output "):
                continue
            if s == "!ordered":
                group.ordered = True
                continue
            if s[:2] in ("* ", "! ", "? "):
                ut = parse_untagged(line[2:], s[0])
                if s[0] == "*" and ut.args[:1] and (astring(ut.args[0]) or "").lower() == "bye":
                    group.bye = True
                group.untagged.append(ut)
                continue
            if group.pending > 0:
                rest = s
                if test.connections > 1:
                    first = rest.split(" ", 1)[0]
                    if first.isdigit() and int(first) > 0:
                        rest = rest.split(" ", 1)[1] if " " in rest else ""
                reply, tag, _ = _get_cmd_reply(rest)
                if reply is not None:
                    cmd = next((c for c in group.commands if c.tag == tag), None)
                    if cmd is None or cmd.reply is not None:
                        raise ValueError(f"{path} line {lineno}: reply for unknown tag")
                    rargs = parse_args(rest.encode())
                    cmd.reply = rargs[1:] if tag else rargs
                    group.pending -= 1
                    continue
        if group is None or group.pending == 0:
            group = Group()
            test.groups.append(group)
        text = s
        if test.connections > 1:
            first = text.split(" ", 1)[0]
            if not first.isdigit() or int(first) == 0:
                raise ValueError(f"{path} line {lineno}: missing client index")
            conn = int(first) - 1
            if group.commands and group.conn != conn:
                raise ValueError(f"{path} line {lineno}: pipelined commands on different connections")
            group.conn = conn
            test.connections = max(test.connections, conn + 1)
            text = text.split(" ", 1)[1] if " " in text else ""
        reply, tag, text = _get_cmd_reply(text)
        if tag == 0 and group.pending > 0:
            raise ValueError(f"{path} line {lineno}: missing reply from previous command group")
        if not group.commands and text[:2] in ("* ", "! ", "? "):
            group.untagged.append(parse_untagged(text[2:].encode(), text[0]))  # banner check
            continue
        if reply is None:
            group.pending += 1
        # keep the raw bytes of the command (it may contain literals)
        prefix_len = len(s.encode()) - len(text.encode())
        group.commands.append(Command(lineno, line[prefix_len:], tag, reply))
    if group is not None and group.pending:
        raise ValueError(f"{path}: missing reply")
    if not any(c.text.strip().lower() == b"logout" for g in test.groups for c in g.commands) and \
            not any(g.bye for g in test.groups):
        test.groups.append(Group(conn=0, commands=[Command(0, b"logout", 0, REPLY_OK)]))
    return test


# ---------------------------------------------------------------- mbox source

FROM_RE = re.compile(rb"^From \S+\s+(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})(?: ([+-]\d{4}))?")


def read_mbox(path: Path) -> list[tuple[bytes, str | None]]:
    """Messages (CRLF) with an APPEND date-time from the From_ line."""
    data = path.read_bytes()
    msgs: list[tuple[bytes, str | None]] = []
    cur: list[bytes] | None = None
    date: str | None = None
    prev_blank = True
    for line in data.split(b"\n"):
        if line.startswith(b"From ") and prev_blank:
            if cur is not None:  # the blank separator line stays part of the message, as in imaptest
                msgs.append((b"".join(ln + b"\r\n" for ln in cur), date))
            cur = []
            m = FROM_RE.match(line)
            date = None
            if m:
                t = time.strptime(m.group(1).decode().replace("  ", " "), "%a %b %d %H:%M:%S %Y")
                date = time.strftime("%d-%b-%Y %H:%M:%S", t) + " " + (m.group(2) or b"+0000").decode()
            prev_blank = False
            continue
        if cur is not None:
            cur.append(line.rstrip(b"\r"))
        prev_blank = line.strip() == b""
    if cur is not None:
        if cur and cur[-1] == b"":  # the file's final newline
            cur.pop()
        msgs.append((b"".join(ln + b"\r\n" for ln in cur), date))
    return msgs


# ---------------------------------------------------------------- connection

class Conn:
    def __init__(self, idx: int, sock: socket.socket, timeout: float) -> None:
        self.idx = idx
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.ntag = 0
        self.exists = 0
        self.caps: list[str] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                raise TestFailed(f"connection {self.idx + 1}: unexpected disconnection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def read_response(self) -> bytes:
        """One full server response, literals inline."""
        out = bytearray()
        while True:
            line = self._readline()
            out += line
            m = re.search(rb"~?\{(\d+)\+?\}\r\n$", line)
            if not m:
                return bytes(out)
            size = int(m.group(1))
            while len(self.buf) < size:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.closed = True
                    raise TestFailed(f"connection {self.idx + 1}: unexpected disconnection")
                self.buf += chunk
            out += self.buf[:size]
            self.buf = self.buf[size:]

    def next_tag(self) -> str:
        self.ntag += 1
        return f"{self.idx + 1}.{self.ntag}"

    def note_untagged(self, args: list[Arg]) -> None:
        if len(args) >= 2 and args[0][0] == "atom" and args[0][1].isdigit() and args[1][0] == "atom":
            kw = args[1][1].upper()
            if kw == "EXISTS":
                self.exists = int(args[0][1])
            elif kw == "EXPUNGE":
                self.exists = max(0, self.exists - 1)
        if args and args[0][0] == "atom" and args[0][1].upper() == "CAPABILITY":
            self.caps = [a[1].upper() for a in args[1:] if a[0] == "atom"]
        for a in args:
            if a[0] == "atom" and a[1].upper().startswith("[CAPABILITY"):
                i = args.index(a)
                caps = []
                for b in args[i + 1:]:
                    if b[0] != "atom":
                        break
                    caps.append(b[1].rstrip("]").upper())
                    if b[1].endswith("]"):
                        break
                self.caps = caps
                break

    def simple(self, command: bytes, on_untagged: Any = None) -> tuple[str, list[Arg]]:
        """Send a setup command (literals synchronising) and return (status, tagged args)."""
        tag = self.next_tag()
        self._send_with_literals(tag, command, on_untagged)
        while True:
            resp = self.read_response()
            if resp.startswith(b"* "):
                args = parse_args(resp[2:])
                self.note_untagged(args)
                if on_untagged:
                    on_untagged(args)
                continue
            if resp.startswith(b"+"):
                continue
            t, _, rest = resp.partition(b" ")
            if t.decode() == tag:
                args = parse_args(rest)
                self.note_untagged(args)
                return (args[0][1].upper() if args else ""), args

    def _send_with_literals(self, tag: str, command: bytes, on_untagged: Any) -> str | None:
        """Send ``tag command``; wait for '+' before each synchronising literal.

        Returns the tagged status line if the server refused a literal (tagged reply instead of '+')."""
        data = tag.encode() + b" " + command
        pos = 0
        for m in re.finditer(rb"~?\{(\d+)\}\r\n", data):
            self.send(data[pos:m.end()])
            pos = m.end()
            while True:
                resp = self.read_response()
                if resp.startswith(b"+"):
                    break
                if resp.startswith(b"* "):
                    args = parse_args(resp[2:])
                    self.note_untagged(args)
                    if on_untagged:
                        on_untagged(args)
                    continue
                self.pending_tagged = resp  # tagged reply: the server refused
                return resp.decode("utf-8", "replace")
        self.send(data[pos:] + b"\r\n")
        return None


def imap_quote(s: str) -> bytes:
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def mutf7_decode(s: str) -> str:
    def dec(m: re.Match[str]) -> str:
        b = m.group(1)
        if b == "":
            return "&"
        import base64
        raw = base64.b64decode(b.replace(",", "/") + "=" * (-len(b) % 4))
        return raw.decode("utf-16-be")
    return re.sub(r"&([^-]*)-", dec, s)


# ---------------------------------------------------------------- execution

class Runner:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.o = opts
        self.stats = [[0, 0], [0, 0]]  # [base, extensions] x [command groups run, failed]
        self.vars: dict[str, str] = {}
        self.added: list[str] = []
        self.seqmap: list[int] = []
        self.modseq_idx = 0
        self.modseq_val = 0

    def connect(self, idx: int) -> Conn:
        sock = socket.create_connection((self.o.host, self.o.port), timeout=self.o.timeout)
        if self.o.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=self.o.host)
        c = Conn(idx, sock, self.o.timeout)
        greet = c.read_response()
        c.note_untagged(parse_args(greet[2:]))
        return c

    # -- variable expansion (test_expand_all / test_expand_input)
    def rel_seq(self, n: int) -> str:
        if n == 0:
            return "<zero seq>"
        if n > len(self.seqmap):
            return "<out of range>"
        return "<expunged>" if self.seqmap[n - 1] == 0 else str(self.seqmap[n - 1])

    def expand_all(self, text: bytes) -> bytes:
        out = bytearray()
        i = 0
        n = len(text)
        while i < n:
            c = text[i:i + 1]
            if c != b"$" or i + 1 == n:
                out += c
                i += 1
                continue
            i += 1
            if text[i:i + 1] == b"$":
                out += b"$"
                i += 1
            elif text[i:i + 1] == b"!":
                while i + 1 < n and text[i + 1:i + 2] != b" ":
                    i += 1
                i += 1
            else:
                if text[i:i + 1] == b"{":
                    e = text.index(b"}", i)
                    name = text[i + 1:e].decode()
                    i = e + 1
                else:
                    e = i
                    while e < n and (chr(text[e]).isalnum() or text[e:e + 1] == b"_"):
                        e += 1
                    name = text[i:e].decode()
                    i = e
                if name.isdigit():
                    val = self.rel_seq(int(name))
                else:
                    v = self.vars.get(name)
                    if v is None:
                        raise TestFailed(f"Uninitialized variable: {name}")
                    val = v
                out += val.encode()
        return bytes(out)

    def new_modseq(self, idx: int, value: str) -> str:
        if not value.isdigit():
            return "$modseq-not-number"
        v = int(value)
        if self.modseq_idx > idx:
            return "$modseq-order-mismatch"
        least = self.modseq_val + (idx - self.modseq_idx)
        ret = value
        if v < least:
            ret = f"$modseq-at-least-{least}"
            v = least
        self.modseq_idx, self.modseq_val = idx, v
        return ret

    def expand_input(self, pat: str, inp: str) -> tuple[str | None, bool]:
        icase = True
        out = []
        i = j = 0
        while i < len(pat):
            if pat[i] != "$" or pat[i + 1:i + 2] == "$":
                if pat[i] == "$":
                    i += 1
                if j >= len(inp) or pat[i].upper() != inp[j].upper():
                    return None, icase
                out.append(pat[i])
                i += 1
                j += 1
                continue
            i += 1
            if pat[i:i + 1] == "{":
                e = pat.find("}", i + 1)
                if e < 0:
                    return "", icase
                name = pat[i + 1:e]
                i = e + 1
            else:
                e = i
                while e < len(pat) and (pat[e].isalnum() or pat[e] == "_"):
                    e += 1
                name = pat[i:e]
                i = e
            value: str | None
            if name.isdigit():
                value = self.rel_seq(int(name))
            elif name.startswith("case:"):
                icase = False
                value = name[5:]
            else:
                value = self.vars.get(name) if name else None
                if value is None:
                    rest = pat[i:]
                    tmp = rest if rest[:1] != "$" else self.expand_input(rest, inp[j:])[0] or ""
                    p = j
                    stop = tmp[:1].upper()
                    while p < len(inp) and (stop == "" or inp[p].upper() != stop):
                        p += 1
                    captured = inp[j:p]
                    m = re.fullmatch(r"modseq(\d+)", name)
                    if name == "":
                        value = captured
                    elif m:
                        value = self.new_modseq(int(m.group(1)), captured)
                        self.vars[name] = value
                    else:
                        self.vars[name] = captured
                        self.added.append(name)
                        value = captured
            out.append(value)
            for ch in value:
                if j >= len(inp) or inp[j] != ch:
                    return None, icase
                j += 1
        return "".join(out), icase

    # -- matching (test_imap_match_list / test_imap_match_args); UINT_MAX = full match
    FULL = 1 << 30

    def match_list(self, match: list[Arg], args: list[Arg]) -> int:
        unordered = False
        chain = 1
        noextra = -1
        ignores: list[str] = []
        bans: list[str] = []
        k = 0
        while k < len(match) and match[k][0] == "atom" and match[k][1].startswith("$!"):
            d = match[k][1][2:]
            if d.startswith("unordered"):
                unordered = True
                if noextra == -1:
                    noextra = 0
                if d[9:10] == "=":
                    chain = int(d[10:])
            elif d == "ordered":
                unordered = False
            elif d == "extra":
                noextra = 0
            elif d == "noextra":
                noextra = 1
            elif d.startswith("ignore="):
                ignores.append(d[7:].lower())
            elif d.startswith("ban="):
                bans.append(d[4:].lower())
            k += 1
        match = match[k:]
        if noextra == -1:
            noextra = 1
        if not unordered:
            return self.match_args(match, args, None, False)
        if len(args) % chain:
            return 0
        matched = [False] * len(args)
        ret = 0
        for m0 in range(0, len(match), chain):
            for i in range(0, len(args), chain):
                if self.match_args(match[m0:m0 + chain], args[i:], chain, False) == self.FULL:
                    matched[i] = True
                    break
            else:
                return ret
            ret += 1
        for i in range(0, len(args), chain):
            if matched[i]:
                continue
            s = astring(args[i])
            if s is None:
                continue
            if noextra > 0 and s.lower() not in ignores:
                return ret
            if noextra <= 0 and s.lower() in bans:
                return ret
        return self.FULL

    def match_args(self, match: list[Arg], args: list[Arg], maxn: int | None, prefix: bool) -> int:
        ret = 0
        mi = ai = 0
        left = maxn if maxn is not None else 1 << 30
        while mi < len(match) and left > 0:
            m = match[mi]
            a = args[ai] if ai < len(args) else ("eol",)
            if m[0] == "nil":
                if a[0] != "nil":
                    return ret
            elif m[0] in ("atom", "string", "literal"):
                if m[1] == "$" and a[0] == "list":
                    pass
                elif m[1] == "$]":
                    while ai < len(args) and args[ai][0] == "atom" and "]" not in args[ai][1]:
                        ai += 1
                else:
                    s = astring(a)
                    if s is None:
                        return ret
                    mstr, icase = self.expand_input(m[1], s)
                    if mstr is None:
                        return ret
                    last = mi + 1 == len(match)
                    if prefix and last:
                        ok = s[:len(mstr)].lower() == mstr.lower() if icase else s.startswith(mstr)
                    else:
                        ok = s.lower() == mstr.lower() if icase else s == mstr
                    if not ok:
                        return ret
            elif m[0] == "list":
                if a[0] != "list":
                    return ret
                sub = self.match_list(m[1], a[1])
                if sub != self.FULL:
                    return ret + sub
            mi += 1
            ai += 1
            left -= 1
            ret += 1
        if prefix or ai >= len(args) or left == 0:
            return self.FULL
        return ret

    # -- per-test setup
    def run_test(self, test: Test) -> tuple[str, str]:
        self.vars = {}
        self.added = []
        self.seqmap = []
        self.modseq_idx = 0
        self.modseq_val = 0
        box = self.o.box
        user = self.o.user
        self.vars.update(user=user, username=user.split("@")[0],
                         domain=user.split("@")[1] if "@" in user else self.o.host,
                         password=self.o.password, mailbox=box,
                         mailbox_url=urllib.parse.quote(mutf7_decode(box), safe="/"))
        for k in range(2, test.connections + 1):
            self.vars[f"user{k}"] = self.vars["user"]
            self.vars[f"username{k}"] = self.vars["username"]
            self.vars[f"domain{k}"] = self.vars["domain"]
            self.vars[f"password{k}"] = self.o.password
        self.msgs = read_mbox(test.mbox)
        self.msg_next = 0
        conns: list[Conn] = []
        try:
            for k in range(test.connections):
                conns.append(self.connect(k))
            self.conns = conns
            st = STATES.index(test.state)
            if st == 0:
                if not self.have_caps(test, conns[0].caps):
                    raise TestSkipped()
            else:
                for c in conns:
                    status, args = c.simple(b"LOGIN " + imap_quote(user) + b" " + imap_quote(self.o.password))
                    if status != "OK":
                        raise TestFailed(f"LOGIN failed: {args_str(args)}")
                c0 = conns[0]
                c0.simple(b"CAPABILITY")
                if not self.have_caps(test, c0.caps):
                    raise TestSkipped()
                # delete + unsubscribe everything under the test mailbox name
                listed: list[str] = []
                subscribed: list[str] = []

                def collect(args: list[Arg], into: list[str]) -> None:
                    if len(args) >= 4 and args[1][0] == "list":
                        s = astring(args[3])
                        if s is not None:
                            into.append(s)
                mask = imap_quote(box + "*")
                c0.simple(b'LIST "" ' + mask, lambda a: collect(a, listed) if astring(a[0]) and a[0][1].upper() == "LIST" else None)
                c0.simple(b'LSUB "" ' + mask, lambda a: collect(a, subscribed) if astring(a[0]) and a[0][1].upper() == "LSUB" else None)
                for name in sorted(listed, key=str.lower, reverse=True):
                    c0.simple(b"DELETE " + imap_quote(name))
                for name in sorted(subscribed, key=str.lower, reverse=True):
                    c0.simple(b"UNSUBSCRIBE " + imap_quote(name))
                if st >= 2 and box.upper() != "INBOX":
                    status, args = c0.simple(b"CREATE " + imap_quote(box))
                    if status != "OK":
                        raise TestFailed(f"CREATE failed: {args_str(args)}")
                if st >= 3:
                    count = len(self.msgs) if test.messages is None else test.messages
                    for _ in range(count):
                        status, args = c0.simple(self.append_cmd(box.encode()))
                        if status != "OK":
                            raise TestFailed(f"APPEND failed: {args_str(args)}")
                if st >= 4:
                    for c in conns:
                        status, args = c.simple(b"SELECT " + imap_quote(box))
                        if status != "OK":
                            raise TestFailed(f"SELECT failed: {args_str(args)}")
            # like imaptest, a failing command group is counted and the test goes on
            first_error = ""
            failed = 0
            failed_lines: list[str] = []
            for gi, group in enumerate(test.groups):
                self.stats[1 if test.caps else 0][0] += 1
                try:
                    self.run_group(test, group, gi)
                except TestFailed as e:
                    failed += 1
                    failed_lines.append(str(group.commands[0].line if group.commands else 0))
                    self.stats[1 if test.caps else 0][1] += 1
                    first_error = first_error or str(e)
                    if any(c.closed for c in conns):
                        break
            if failed:
                return "FAIL", (f"{failed} of {len(test.groups)} command groups failed (lines "
                                f"{','.join(failed_lines)}); first: {first_error}")
            return "pass", ""
        except TestSkipped:
            return "skip", ""
        except TestFailed as e:
            return "FAIL", str(e)
        except OSError as e:
            return "FAIL", f"connection error: {e!r}"
        finally:
            for c in conns:
                try:
                    c.sock.close()
                except OSError:
                    pass

    def have_caps(self, test: Test, caps: list[str]) -> bool:
        have = {c.upper() for c in caps}
        return all(c.upper() in have for c in test.caps)

    def next_message(self) -> tuple[bytes, str | None]:
        msg = self.msgs[self.msg_next % len(self.msgs)]
        self.msg_next += 1
        return msg

    def append_cmd(self, args: bytes) -> bytes:
        body, date = self.next_message()
        if not args.startswith((b'"', b"{")) and not re.fullmatch(rb"[^\s(){%*\"\\\]]+", args.split(b" ")[0]):
            pass
        parts = args.split(b" ", 1)
        mbox = parts[0] if parts[0].startswith(b'"') else imap_quote(parts[0].decode())
        rest = b" " + parts[1] if len(parts) > 1 else b""
        datepart = b' "' + date.encode() + b'"' if date and b'"' not in rest else b""
        return b"APPEND " + mbox + rest + datepart + b" {%d}\r\n" % len(body) + body

    @staticmethod
    def append_has_body(args: bytes) -> bool:
        parsed = parse_args(args)
        k = 1
        if k < len(parsed) and parsed[k][0] == "list":
            k += 1
        if k < len(parsed) and parsed[k][0] == "string":
            k += 1
        return k < len(parsed) and (parsed[k][0] == "literal" or
                                    (parsed[k][0] == "atom" and parsed[k][1].lower() == "catenate"))

    def run_group(self, test: Test, group: Group, gi: int) -> None:
        conn = self.conns[group.conn]
        self.seqmap = list(range(1, conn.exists + 1))
        found = [False] * len(group.untagged)
        mismatches = 0
        first_extra: str | None = None
        best: dict[int, tuple[int, str]] = {}
        where = f"group {gi + 1}/{len(test.groups)} (line {group.commands[0].line if group.commands else 0})"
        pending: dict[str, Command] = {}
        errors: list[str] = []
        first_tag = ""

        def on_untagged(args: list[Arg]) -> None:
            nonlocal mismatches, first_extra
            if not group.untagged:
                conn.note_untagged(args)
                return
            prefix = bool(args) and args[0][0] == "atom" and args[0][1].lower() in ("ok", "no", "bad", "bye")
            self.added = []
            some = False
            for i, ut in enumerate(group.untagged):
                if found[i]:
                    continue
                if first_tag:
                    self.vars["tag"] = first_tag
                n = self.match_args(ut.args, args, None, prefix)
                self.vars.pop("tag", None)
                if n == self.FULL:
                    if ut.existence == "!":
                        errors.append(f"{where}: unexpected untagged match\n   match: {args_str(ut.args)}\n"
                                      f"   reply: {args_str(args)}")
                        conn.note_untagged(args)
                        return
                    found[i] = True
                    some = True
                    self.added = []
                    if group.ordered:
                        break
                    continue
                if best.get(i, (-1, ""))[0] < n:
                    best[i] = (n, args_str(args))
                for v in self.added:
                    self.vars.pop(v, None)
                self.added = []
                if group.ordered and ut.existence == "*":
                    break
            if not some:
                mismatches += 1
                if not test.ignore_extra and first_extra is None:
                    first_extra = args_str(args)
            # expunge: update the relative sequence map after matching
            if len(args) >= 2 and args[0][0] == "atom" and args[0][1].isdigit() and \
                    args[1][0] == "atom" and args[1][1].upper() == "EXPUNGE":
                seq = int(args[0][1])
                if seq <= len(self.seqmap):
                    for k in range(seq - 1, len(self.seqmap)):
                        if self.seqmap[k] >= seq:
                            if self.seqmap[k] == seq:
                                self.seqmap[k] = 0
                            else:
                                self.seqmap[k] -= 1
            conn.note_untagged(args)

        def check_tagged(cmd: Command, rest: bytes) -> None:
            args = parse_args(rest)
            self.vars["tag"] = cmd.sent_tag
            n = self.match_args(cmd.reply or REPLY_OK, args, None, True)
            self.vars.pop("tag", None)
            if n != self.FULL:
                errors.append(f"{where}: expected tagged reply '{args_str(cmd.reply or [])}', got '{args_str(args)}'"
                              f"\n   command: {cmd.text[:200].decode('utf-8', 'replace')}")
            conn.note_untagged(args)

        for cmd in group.commands:
            try:
                text = self.expand_all(cmd.text)
            except TestFailed as e:
                errors.append(f"{where}: {e}")
                continue
            tag = conn.next_tag()
            cmd.sent_tag = tag
            if not first_tag:
                first_tag = tag
            low = text.lower()
            if low == b"append":
                text = self.append_cmd(self.o.box.encode())
            elif low.startswith(b"append ") and not self.append_has_body(text[7:]):
                text = self.append_cmd(text[7:])
            pending[tag] = cmd
            refused = conn._send_with_literals(tag, text, on_untagged)
            if refused is not None:
                t, _, rest = refused.encode().partition(b" ")
                pending.pop(tag)
                check_tagged(cmd, rest.rstrip(b"\r\n"))
        while pending:
            resp = conn.read_response()
            if resp.startswith(b"* "):
                args = parse_args(resp[2:])
                if args and args[0][0] == "atom" and args[0][1].upper() == "BYE" and \
                        any(c.text.strip().lower() == b"logout" for c in pending.values()):
                    conn.note_untagged(args)
                    continue
                on_untagged(args)
                continue
            if resp.startswith(b"+"):
                continue
            t, _, rest = resp.partition(b" ")
            done = pending.pop(t.decode(), None)
            if done is None:
                continue
            check_tagged(done, rest.rstrip(b"\r\n"))
        missing = [i for i, ut in enumerate(group.untagged) if ut.existence == "*" and not found[i]]
        if missing:
            i = missing[0]
            errors.append(f"{where}: missing {len(missing)} untagged replies ({mismatches} mismatches)\n"
                             f"   first expected: {args_str(group.untagged[i].args)}\n"
                             f"   best match: {best.get(i, (0, ''))[1]}\n"
                             f"   command: {group.commands[0].text[:200].decode('utf-8', 'replace') if group.commands else ''}")
        if first_extra is not None:
            errors.append(f"{where}: {mismatches} unexpected untagged replies, first: {first_extra}")
        if group.sleep:
            time.sleep(group.sleep)
        if errors:
            raise TestFailed(errors[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", required=True, type=Path, help="folder with imaptest's src/tests files")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--tls", action="store_true", help="implicit TLS (certificate not verified)")
    ap.add_argument("--box", default="imaptest", help="test mailbox (deleted and re-created per test)")
    ap.add_argument("--only", default="", help="comma-separated test names")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("-v", "--verbose", action="store_true", help="print failure details")
    o = ap.parse_args(argv)
    default_mbox = o.tests / "default.mbox"
    names = sorted(p.name for p in o.tests.iterdir()
                   if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".mbox")
                   and p.name not in ("Makefile.am", "README.txt"))
    if o.only:
        names = [n for n in names if n in o.only.split(",")]
    runner = Runner(o)
    counts = {"pass": 0, "FAIL": 0, "skip": 0}
    for name in names:
        try:
            test = parse_test(o.tests / name, default_mbox)
        except (ValueError, UnicodeDecodeError) as e:
            print(f"{name:40s} FAIL  (parse error: {e})")
            counts["FAIL"] += 1
            continue
        result, detail = runner.run_test(test)
        counts[result] += 1
        print(f"{name:40s} {result}")
        if detail and o.verbose:
            print("   " + detail.replace("\n", "\n   "))
        sys.stdout.flush()
    (bt, bf), (et, ef) = runner.stats
    print(f"base protocol: {bf}/{bt} individual command groups failed")
    print(f"extensions: {ef}/{et} individual command groups failed")
    print(f"{len(names)} test groups: {counts['pass']} passed, {counts['FAIL']} failed, "
          f"{counts['skip']} skipped due to missing capabilities")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
