"""Shared fixtures: temporary configs on port 0, fast password hashing, a test TLS CA."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Test tiers by directory (README, Development): the fast tier is ``pytest tests/unit``
#: (no sockets, < 60 s); the others carry a marker so ``-m "not slow and not e2e"`` works.
TIER_MARKERS = {"protocol": "protocol", "e2e": "e2e", "slow": "slow"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets its tier's marker from its directory (a file cannot forget it)."""
    tests = ROOT / "tests"
    for item in items:
        try:
            tier = item.path.relative_to(tests).parts[0]
        except ValueError:
            continue
        marker = TIER_MARKERS.get(tier)
        if marker is not None and item.get_closest_marker(marker) is None:
            item.add_marker(getattr(pytest.mark, marker))

# The esam command speaks the operator's language (ESAM_LANG, else the locale); the tests read
# its output in English unless a test chooses another language itself (tests/unit/test_cli_i18n.py).
os.environ["ESAM_LANG"] = "en"

# Cheap argon2 for tests (production defaults are m=64MiB, t=3, p=4).
FAST_AUTH = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "argon2_parallelism": 1, "hash_workers": 2}


def write_config(tmp: Path, **sections: dict[str, Any]) -> Path:
    """A TOML config under ``tmp`` with every listener on 127.0.0.1:0."""
    from esam_mail.config import _toml_key, _toml_value

    base: dict[str, dict[str, Any]] = {
        "server": {"hostname": "mx.esam.test", "data_dir": str(tmp / "data"), "shutdown_grace": 5.0},
        "mail": {"domain": "esam.test"},
        "listen": {k: "127.0.0.1:0" for k in ("smtp", "submission", "submissions", "imap", "imaps", "http")},
        "auth": dict(FAST_AUTH),
        "registration": {"agreement_file": str(ROOT / "conf" / "agreement.txt")},
        "inbound": {"verify": False, "dmarc_reject": False},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    path = tmp / "esam.toml"
    path.write_text("\n".join(lines))
    return path


_SQLITE_TEMPLATE: list[Path] = []


def migrate_directory(url: str) -> None:
    """A fresh SQLite directory at ``url`` at the migrations' head, as ``upgrade_schema_sync``
    makes it, but copied from one template this test process migrated (an Alembic run costs
    ~0.1 s and hundreds of tests start from an empty directory).  A file that exists already,
    or a non-SQLite URL, gets the real ``upgrade_schema_sync``.  tests/unit/test_migrations.py
    runs the migrations themselves."""
    from esam_mail.directory.sql import upgrade_schema_sync

    prefix = "sqlite+aiosqlite:///"
    path = Path(url[len(prefix):]) if url.startswith(prefix) else None
    if path is None or path.exists():
        upgrade_schema_sync(url)
        return
    if not _SQLITE_TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="esam-dir-template-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "directory.db"
        upgrade_schema_sync(f"{prefix}{template}")
        # the engine is disposed: the WAL is checkpointed into the file and removed
        assert not template.with_name("directory.db-wal").exists()
        _SQLITE_TEMPLATE.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_SQLITE_TEMPLATE[0], path)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def cfg(config_path: Path) -> Any:
    from esam_mail import config

    return config.load(config_path)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None or os.path.exists(f"/usr/sbin/{tool}")


def add_staff(directory_url: str, username: str, role: str = "employee", office: str | None = "ALA01",
              domain: str = "esam.test") -> None:
    """A staff account in the directory at ``directory_url`` (for ``--employee``), made
    outside any running loop."""
    import asyncio

    from esam_mail.directory.sql import SqlDirectory
    from esam_mail.services.accounts.staff import StaffService

    async def go() -> None:
        d = SqlDirectory(directory_url, domain=domain)
        try:
            await StaffService(d, lambda pw: "x", lambda pw, h: False).add(
                username, f"Staff {username}", role, "a long staff password", office_code=office,
                actor=("sysadmin", "test"))
        finally:
            await d.close()

    asyncio.run(go())
