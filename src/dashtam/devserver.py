"""`dashtam dev`: start every process of the system and stop them together.

Each process runs as a child `dashtam <command>`; the first one to exit stops the rest, and
Ctrl-C stops all of them cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field

from dashtam.core.config import Settings


@dataclass(frozen=True)
class DevProcess:
    """One child process of `dashtam dev`."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def dev_processes(settings: Settings) -> list[DevProcess]:
    """The processes `dashtam dev` runs, with the environment each needs."""
    return [DevProcess("api", ("api",))]


async def run_dev(settings: Settings) -> int:
    """Migrate, then run every dev process until one exits or we are interrupted.

    Returns:
        The exit code for the `dev` command.
    """
    from dashtam.core.migrations import upgrade_to_head
    from dashtam.core.tls import ensure_certificates

    if settings.tls_enabled:
        ensure_certificates(settings.certs_dir)
    await asyncio.to_thread(upgrade_to_head, settings.effective_database_url)
    children: list[tuple[DevProcess, asyncio.subprocess.Process]] = []
    for proc in dev_processes(settings):
        env = {**os.environ, **proc.env}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dashtam", *proc.args, env=env
        )
        children.append((proc, child))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.create_task(child.wait()) for _, child in children]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*waiters, stopper], return_when=asyncio.FIRST_COMPLETED)
    for _, child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(child.wait() for _, child in children))
    stopper.cancel()
    return 0 if stop.is_set() else max(codes, default=0)
