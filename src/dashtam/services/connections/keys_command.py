"""The body of `dashtam keys rotate`: resources, a rich progress bar, a summary, an exit code."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dashtam.core.config import Settings
from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.kv import MemoryKeyValueStore
from dashtam.core.state import AppResources
from dashtam.services.connections.rotation import pending_rotation_count, rotate_keys


async def run_key_rotation(settings: Settings, *, batch_size: int, quiet: bool = False) -> int:
    """Rotate every stored token to the newest key, showing progress.

    Args:
        settings: Database URL and `ENCRYPTION_KEYS` (newest key last).
        batch_size: Rows per committed batch.
        quiet: No progress bar (tests, scripts).

    Returns:
        0 when every row is on the newest key, 1 when some could not be decrypted.
    """
    console = Console(stderr=True, quiet=quiet)
    engine = create_engine(settings.effective_database_url, settings)
    # Rotation needs only the database and the vault; the KV store is a placeholder.
    resources = AppResources(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        kv=MemoryKeyValueStore(),
    )
    try:
        total = await pending_rotation_count(resources)
        with Progress(
            TextColumn("[bold]re-encrypting tokens"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=quiet,
        ) as progress:
            task = progress.add_task("rotate", total=total)
            report = await rotate_keys(
                resources,
                batch_size=batch_size,
                on_batch=lambda visited: progress.advance(task, visited),
            )
    finally:
        await resources.close()
    console.print(
        f"key {report.key_id}: {report.rotated} rotated, {report.skipped} changed meanwhile, "
        f"{report.failed} undecryptable, {report.states_rotated} pending authorizations"
    )
    return 1 if report.failed else 0
