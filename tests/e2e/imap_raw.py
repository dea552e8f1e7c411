"""IMAP over implicit TLS for the e2e tests (IDLE pushes with a deadline, exact untagged lines):
the shared client of tests/rawclient.py with the e2e call style (``cmd`` asserts OK)."""

from __future__ import annotations

from tests import rawclient


class RawIMAP(rawclient.RawIMAP):
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        tls = rawclient.unverified_tls()  # the e2e servers have a self-signed certificate
        super().__init__(rawclient.open_socket(port, host=host, tls=tls, timeout=timeout), timeout=timeout)
        assert self.greeting.startswith(b"* OK"), self.greeting

    def cmd(self, text: str) -> list[bytes]:
        """Send a command; every line up to and including its tagged OK."""
        return self.ok(text.encode())

    def close(self) -> None:
        self.logout()
