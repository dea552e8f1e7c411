"""Shared raw application fixtures (appendix forms of the rules)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from identity_samples import INDIVIDUAL, LEGAL_ENTITY


@pytest.fixture
def individual() -> dict[str, Any]:
    return copy.deepcopy(INDIVIDUAL)


@pytest.fixture
def legal_entity() -> dict[str, Any]:
    return copy.deepcopy(LEGAL_ENTITY)
