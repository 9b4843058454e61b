"""What `dashtam sync` and `dashtam export` do (the typer commands in `cli.py` call these).

`dashtam sync <provider-id>` runs a sync in the foreground with a progress bar: it queues a
manual run (or takes the one already queued) and runs it in this process; a run already
running elsewhere under a live lease is left alone.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dashtam.core.config import Settings
from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.financial import SyncStatus, SyncTrigger
from dashtam.services.connections import repository as connections_repo
from dashtam.services.sync import runs
from dashtam.services.sync.engine import SyncEngine, SyncOutcome, SyncProgress
from dashtam.services.sync.export import ExportFormat, UnknownUser, load_rows, render


async def _resources(settings: Settings) -> AppResources:
    from dashtam.main import build_resources  # the app module; imported late (it imports us)

    return await build_resources(settings)


async def run_sync_command(settings: Settings, provider_id: uuid.UUID) -> int:
    """Run one sync of `provider_id` now; print the counts. Returns the exit code."""
    console = Console(stderr=True)
    resources = await _resources(settings)
    try:
        async with session_scope(resources.session_factory) as session:
            provider = await connections_repo.get_provider(session, provider_id=provider_id)
            if provider is None:
                console.print(f"[red]error:[/red] no provider {provider_id}")
                return 2
            if provider.status != "active":
                console.print(
                    f"[red]error:[/red] provider {provider_id} is {provider.status}, not active"
                )
                return 2
            run, _created = await runs.create_or_get_active(
                session,
                user_id=provider.user_id,
                provider_id=provider_id,
                trigger=SyncTrigger.MANUAL,
                now=utcnow(),
            )
            run_id = run.id
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("accounts", total=None, counts="")

            def show(report: SyncProgress) -> None:
                label: str = report.phase
                if report.phase == "transactions":
                    label = f"account {report.account_index}/{report.account_count}"
                bar.update(
                    task,
                    description=label,
                    completed=report.windows_done,
                    total=max(report.windows_estimate, report.windows_done) or None,
                    counts=(
                        f"+{report.added} ~{report.modified} -{report.removed} "
                        f"({report.rows_fetched} rows)"
                    ),
                )

            outcome = await SyncEngine(resources, progress=show).run(run_id)
        return _print_outcome(outcome, run_id)
    finally:
        await resources.close()


def _print_outcome(outcome: SyncOutcome | None, run_id: uuid.UUID) -> int:
    out = Console()
    if outcome is None:
        out.print(f"sync {run_id} is running elsewhere; watch it with GET /api/v1/syncs/{run_id}")
        return 1
    out.print(
        f"sync {outcome.run_id} {outcome.status.value}: accounts={outcome.accounts} "
        f"added={outcome.added} modified={outcome.modified} removed={outcome.removed}"
    )
    if outcome.status is SyncStatus.FAILED:
        out.print(f"[red]{outcome.error_code}[/red]: {outcome.error_message}")
        return 1
    return 0


async def run_export_command(
    settings: Settings, *, email: str, fmt: ExportFormat, output: Path | None
) -> int:
    """Write the user's transactions to `output` (or stdout). Returns the exit code."""
    resources = await _resources(settings)
    try:
        async with session_scope(resources.session_factory) as session:
            try:
                rows = await load_rows(session, email=email)
            except UnknownUser:
                Console(stderr=True).print(f"[red]error:[/red] no user with email {email}")
                return 2
        document = render(rows, fmt)
    finally:
        await resources.close()
    if output is None:
        sys.stdout.write(document)
    else:
        await asyncio.to_thread(output.write_text, document, encoding="utf-8")
        Console(stderr=True).print(f"wrote {len(rows)} transactions to {output}")
    return 0
