"""Fixtures for the EDS verifier tests: one cached test PKI per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from esam_mail.services.accounts import eds
from tests import eds_testing as t

#: A PKI whose CAs span 2015..2045, for time-travel tests with fixed dates.
LONG_FROM = datetime(2015, 1, 1, tzinfo=UTC)
LONG_TO = datetime(2045, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LongPki:
    root: t.Issued
    intermediate: t.Issued


@pytest.fixture(scope="session")
def pki() -> t.DemoPki:
    return t.default_pki()


@pytest.fixture(scope="session")
def long_pki() -> LongPki:
    root = t.root_ca(
        "ESAM LONG ROOT", key=t.cached_key("rsa", 920), not_before=LONG_FROM, not_after=LONG_TO
    )
    inter = t.intermediate_ca(
        root, "ESAM LONG NCA", key=t.cached_key("rsa", 921), not_before=LONG_FROM, not_after=LONG_TO
    )
    return LongPki(root, inter)


@pytest.fixture(scope="session")
def verifier(pki: t.DemoPki) -> eds.BuiltinVerifier:
    return eds.BuiltinVerifier([pki.root.cert])


@pytest.fixture(scope="session")
def long_verifier(long_pki: LongPki) -> eds.BuiltinVerifier:
    return eds.BuiltinVerifier([long_pki.root.cert])
