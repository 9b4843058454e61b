"""`dashtam dev`: start every process of the system and stop them together.

Each process runs as a child `dashtam <command>`; the first one to exit stops the rest, and
Ctrl-C stops all of them cleanly.
"""

from __future__ import annotations

import asyncio
import os
import secrets
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


def dev_processes(
    settings: Settings, *, credentials: tuple[str, str] | None = None
) -> list[DevProcess]:
    """The processes `dashtam dev` runs, with the environment each needs.

    The API's Schwab provider is pointed at the local simulator, and both get the same app
    key and secret — random per run unless `credentials` is given — so a newcomer can connect
    `demo` / `demo-password` in a browser right away.
    """
    client_id, client_secret = credentials or (secrets.token_hex(16), secrets.token_hex(32))
    scheme = "https" if settings.tls_enabled else "http"
    simulator = f"{scheme}://127.0.0.1:{settings.simulator_port}"
    redirect_uri = f"{scheme}://127.0.0.1:{settings.callback_port}"
    ca_file = settings.tls_ca_file or settings.certs_dir / "ca.pem"
    api_env = {
        "SCHWAB_APP_KEY": client_id,
        "SCHWAB_APP_SECRET": client_secret,
        "SCHWAB_AUTH_BASE_URL": f"{simulator}/v1/oauth",
        "SCHWAB_API_BASE_URL": f"{simulator}/trader/v1",
        "SCHWAB_REDIRECT_URI": redirect_uri,
        "PROVIDER_CA_FILE": str(ca_file),
    }
    simulator_env = {
        "SIMULATOR_CLIENT_ID": client_id,
        "SIMULATOR_CLIENT_SECRET": client_secret,
        "SIMULATOR_REDIRECT_URIS": redirect_uri,
    }
    callback_env = {"CALLBACK_API_BASE_URL": f"{scheme}://127.0.0.1:{settings.port}"}
    return [
        DevProcess("api", ("api",), api_env),
        DevProcess("callback", ("callback",), callback_env),
        DevProcess("simulator", ("simulator",), simulator_env),
    ]


async def run_dev(settings: Settings) -> int:
    """Migrate, then run every dev process until one exits or we are interrupted.

    Returns:
        The exit code for the `dev` command.
    """
    from dashtam.core.migrations import upgrade_to_head
    from dashtam.core.tls import ensure_certificates

    if settings.tls_enabled:
        ensure_certificates(settings.certs_dir, hosts=settings.certificate_hosts)
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
