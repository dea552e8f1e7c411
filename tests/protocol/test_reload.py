"""SIGHUP applied to a running server through the services' public methods
(``esam_mail.reload``): auth limits, the login cache lifetime, the retry schedule
and the transport map change; a bad file changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.protocol.harness import Running

pytestmark = pytest.mark.protocol


def test_reload_applies_auth_and_outbound_keys(running: Running, tmp_path: Path) -> None:
    from esam_mail.reload import reload_server

    svc = running.services
    auth, queue = svc.authenticator, svc.queue
    auth.cache.put("alice", "pw", "$hash", 1000.0)
    assert auth.cache.check("alice", "pw", "$hash", 1001.0)
    write_config(
        tmp_path,
        auth={"max_failures": 3, "lock_seconds": 42, "cache_seconds": 7},
        outbound={"retry_base": 11, "transport": {"Example.ORG.": "smarthost.test:2525"}},
    )
    assert running.lt.run(reload_server(running.server)) is True
    assert (auth.max_failures, auth.lock_seconds, auth.cache.ttl) == (3, 42, 7.0)
    assert not auth.cache.check("alice", "pw", "$hash", 1001.0)  # old lifetime: forgotten
    assert queue.policy.base == 11
    assert queue.relay.transport_map == {"example.org": "smarthost.test:2525"}
    assert running.server.cfg.auth.max_failures == 3


def test_reload_of_a_broken_file_changes_nothing(running: Running, tmp_path: Path) -> None:
    from esam_mail.reload import reload_server

    before = running.services.authenticator.max_failures
    write_config(tmp_path, auth={"max_failures": -1})
    assert running.lt.run(reload_server(running.server)) is False
    assert running.services.authenticator.max_failures == before
