"""Start-up refuses a database that is not at the code's migration head."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.config import ConfigurationError, Settings
from dashtam.core.migrations import head_revision, schema_problem
from dashtam.main import create_app
from tests.conftest import make_settings


class TestSchemaProblem:
    async def test_migrated_database_has_no_problem(self, engine: AsyncEngine) -> None:
        assert head_revision() is not None
        assert await schema_problem(engine) is None


class TestStartup:
    async def test_unmigrated_database_stops_startup_with_a_clear_message(
        self, tmp_path: Path
    ) -> None:
        settings: Settings = make_settings(
            tmp_path,
            database_url=f"sqlite+aiosqlite:///{(tmp_path / 'empty.db').as_posix()}",
            redis_url=None,
            auto_migrate=False,
        )
        app = create_app(settings)
        with pytest.raises(ConfigurationError, match="dashtam migrate"):
            async with app.router.lifespan_context(app):
                pass
