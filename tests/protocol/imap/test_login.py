"""Login paths: STARTTLS + LOGINDISABLED, implicit TLS, SASL PLAIN (with SASL-IR), failures."""

from __future__ import annotations

import base64
import imaplib
import logging
import re

import pytest

from tests.protocol.imap.conftest import PASSWORD, Raw


def test_plain_port_advertises_starttls_and_logindisabled(env):
    c = env.plain()
    caps = c.capabilities
    assert "STARTTLS" in caps and "LOGINDISABLED" in caps
    assert not any(x.startswith("AUTH=") for x in caps)


def test_login_before_starttls_is_refused_without_asking_the_authenticator(env):
    r = Raw.plain(env)
    out = r.cmd(b"a", b"LOGIN alice " + PASSWORD.encode())
    assert out[-1].startswith(b"a NO")
    out = r.cmd(b"b", b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()))
    assert out[-1].startswith(b"b NO")
    assert env.auth.calls == []
    r.close()


def test_starttls_then_login(env):
    c = env.plain()
    c.starttls(ssl_context=env.client_ctx())
    caps = c.capability()[1][0].split()
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    assert c.login("alice", PASSWORD)[0] == "OK"
    assert env.auth.calls == [("alice", "imap")]


def test_starttls_discards_pipelined_plaintext(env):
    r = Raw.plain(env)
    r.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert r.line().startswith(b"a OK")
    # "b CAPABILITY" was injected before the handshake: it must never be answered
    tls = env.client_ctx().wrap_socket(r.sock, server_hostname="127.0.0.1")
    r.sock, r.buf = tls, b""
    out = r.cmd(b"c", b"NOOP")
    assert out == [b"c OK NOOP completed."]


def test_implicit_tls_login_and_post_auth_capabilities(env):
    c = env.tls()
    assert "AUTH=PLAIN" in c.capabilities and "AUTH=LOGIN" in c.capabilities
    assert "SASL-IR" in c.capabilities and "STARTTLS" not in c.capabilities
    c.login("alice@esam.test", PASSWORD)
    caps = c.capability()[1][0].decode().split()
    for cap in ("IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "SPECIAL-USE", "CHILDREN",
                "QUOTA", "ENABLE", "ID", "LITERAL+"):
        assert cap in caps


def test_wrong_password_gets_authenticationfailed(env):
    r = Raw.tls(env)
    out = r.cmd(b"a", b"LOGIN alice wrong")
    assert out == [b"a NO [AUTHENTICATIONFAILED] Authentication failed."]


def test_three_failures_disconnect(env):
    r = Raw.tls(env)
    for t in (b"a", b"b"):
        assert r.cmd(t, b"LOGIN alice wrong")[-1].startswith(t + b" NO")
    r.send(b"c LOGIN alice wrong\r\n")
    assert r.line().startswith(b"c NO [AUTHENTICATIONFAILED]")
    assert r.line().startswith(b"* BYE")
    with pytest.raises((EOFError, OSError)):
        r.line(timeout=5)


def test_authenticate_plain_with_initial_response(env):
    r = Raw.tls(env)
    ir = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    out = r.cmd(b"a", b"AUTHENTICATE PLAIN " + ir)
    assert out[-1].startswith(b"a OK [CAPABILITY IMAP4rev1")


def test_authenticate_plain_with_continuation(env):
    c = env.tls()
    typ, _ = c.authenticate("PLAIN", lambda _: b"\0bob\0" + PASSWORD.encode())
    assert typ == "OK"


def test_authenticate_login_mechanism(env):
    r = Raw.tls(env)
    r.send(b"a AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ " + base64.b64encode(b"Username:")
    r.send(base64.b64encode(b"alice") + b"\r\n")
    assert r.line() == b"+ " + base64.b64encode(b"Password:")
    r.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert r.until(b"a")[-1].startswith(b"a OK")


def test_authenticate_cancel(env):
    r = Raw.tls(env)
    r.send(b"a AUTHENTICATE PLAIN\r\n")
    assert r.line().startswith(b"+")
    r.send(b"*\r\n")
    assert r.until(b"a")[-1].startswith(b"a BAD")


def test_authenticator_crash_is_serverbug_without_details(env, caplog):
    env.auth.explode = True
    caplog.set_level(logging.INFO)
    r = Raw.tls(env)
    out = r.cmd(b"a", b"LOGIN alice " + PASSWORD.encode())
    assert re.fullmatch(rb"a NO \[SERVERBUG\] Internal error \(session [0-9a-f]+\)", out[-1])
    assert b"fire" not in b"".join(out) and b"secret" not in b"".join(out)
    assert "directory on fire" in caplog.text  # the traceback is in the log


def test_logs_one_line_per_event_and_no_password(env, caplog):
    caplog.set_level(logging.INFO, logger="esam_mail.imap")
    c = env.tls()
    c.login("alice", PASSWORD)
    c.logout()
    with pytest.raises(imaplib.IMAP4.error):
        env.tls().login("alice", "Wr0ng-" + PASSWORD)
    text = caplog.text
    assert PASSWORD not in text
    assert "event=imap.connect" in text and "event=imap.login result=ok" in text
    assert "event=imap.login result=failed" in text
    sid = re.search(r"event=imap.connect session=(\w+)", text).group(1)
    assert f"event=imap.login result=ok session={sid}" in text


def test_commands_need_authentication(env):
    r = Raw.tls(env)
    assert r.cmd(b"a", b"SELECT INBOX")[-1].startswith(b"a BAD")
    assert r.cmd(b"b", b"ID NIL")[0].startswith(b'* ID ("name" "esam_mail"')


def test_login_answers_without_a_deferred_adapter(env, monkeypatch):
    """LOGIN's check runs as a coroutine of the dispatcher (issue 20: a Deferred adapter and
    callback chain per login showed in the session profile); AUTHENTICATE, whose SASL
    exchange is a Deferred, still answers the same."""
    from twisted.internet import defer

    adapted: list[object] = []
    real = defer.Deferred.fromFuture
    monkeypatch.setattr(defer.Deferred, "fromFuture",
                        classmethod(lambda cls, fut: adapted.append(fut) or real(fut)))
    r = Raw.tls(env)
    out = r.cmd(b"a", b'LOGIN alice "wrong"')
    assert out[-1].startswith(b"a NO [AUTHENTICATIONFAILED]"), out
    out = r.cmd(b"b", b'LOGIN alice "' + PASSWORD.encode() + b'"')
    assert out[-1].startswith(b"b OK [CAPABILITY "), out
    assert adapted == []
    r2 = Raw.tls(env)
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    out = r2.cmd(b"c", b"AUTHENTICATE PLAIN " + token)
    assert out[-1].startswith(b"c OK [CAPABILITY "), out
    assert len(adapted) == 1
