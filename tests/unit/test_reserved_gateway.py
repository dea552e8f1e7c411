"""The hybrid gateway's local part can never be registered as a mailbox."""

from __future__ import annotations

import pytest

from esam_mail import config
from esam_mail.errors import ValidationError
from esam_mail.services.accounts.identity import normalize_username
from esam_mail.services.accounts.registration import reserved_names


def test_gateway_name_is_reserved() -> None:
    cfg = config.from_dict({"hybrid": {"gateway": "letters"}, "mail": {"reserved_names": ["office"]},
                            "registration": {"agreement_file": "conf/agreement.txt"}})
    for name in ("letters", "office", "postmaster"):
        with pytest.raises(ValidationError) as info:
            normalize_username(name, reserved=reserved_names(cfg))
        assert info.value.field == "username"
    assert normalize_username("alice", reserved=reserved_names(cfg)) == "alice"
