"""A uidlist rebuilt by another process (new UIDVALIDITY) is noticed by open folders."""

from __future__ import annotations

from esam_mail.store.check import check_user
from esam_mail.store.maildir import MaildirStore, MaildirUser
from esam_mail.store.uidlist import UidList

from .conftest import msg


def test_open_folder_follows_a_rebuilt_uidlist(store: MaildirStore, alice: MaildirUser) -> None:
    for i in range(3):
        store.deliver_many(["alice"], msg(i))
    f = alice.folder("INBOX")  # an IMAP session's folder, open across the repair
    infos = f.sync()
    old_uv = f.uidvalidity
    keys = [i.key for i in infos]
    # a duplicated UID: the repair renumbers under a new UIDVALIDITY
    (alice.path / "dovecot-uidlist").write_text(
        f"3 V{old_uv} N4 G0\n1 :{keys[0]}\n3 :{keys[1]}\n3 :{keys[2]}\n"
    )
    check_user(alice, repair=True)
    ul = UidList.parse((alice.path / "dovecot-uidlist").read_bytes())
    assert ul.uidvalidity != old_uv
    infos = f.sync()
    assert f.uidvalidity == ul.uidvalidity, "the folder must not hand out new UIDs under the old UIDVALIDITY"
    assert f.status().uidvalidity == ul.uidvalidity
    assert {i.key: i.uid for i in infos} == ul.entries
