"""The Alembic revision chain stays linear: several engineers add revisions in parallel, and
two revisions with the same ``down_revision`` would give two heads (``upgrade head`` fails)."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from esam_mail.directory.sql import MIGRATIONS


def test_migrations_have_exactly_one_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: set down_revision to the head on main"


def test_models_match_the_migrations(tmp_path) -> None:
    """Autogenerate finds nothing to do after ``upgrade head``: models and revisions agree."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from esam_mail.directory.models import Base
    from esam_mail.directory.sql import make_engine, upgrade_schema_sync

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade_schema_sync(url)

    async def diff() -> list[object]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            out = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
            )
        await engine.dispose()
        return list(out)

    assert asyncio.run(diff()) == []
