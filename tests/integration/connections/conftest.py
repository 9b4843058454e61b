"""Fixtures for the connections API tests: the API wired to an in-process simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dashtam.core.state import AppResources
from tests.integration.connections.harness import Rig, rig


@pytest.fixture
async def connections(resources: AppResources, tmp_root: Path) -> AsyncIterator[Rig]:
    """The default rig (Schwab configured, simulator in `same` refresh mode)."""
    async with rig(resources, tmp_root) as the_rig:
        yield the_rig
