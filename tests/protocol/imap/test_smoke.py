from tests.protocol.imap.conftest import msg


def test_smoke(env):
    env.deliver(msg())
    c = env.login()
    typ, data = c.select("INBOX")
    assert typ == "OK", data
    typ, data = c.fetch("1", "(FLAGS BODY.PEEK[] BODYSTRUCTURE ENVELOPE)")
    print(typ, data)
    assert typ == "OK"
