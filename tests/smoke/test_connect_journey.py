"""`dashtam dev` end to end: one command runs API, callback server and simulator, pre-wired.

A newcomer's journey: start `dashtam dev`, log in, connect `demo` / `demo-password` through
the simulator's login form, land on the callback server's "Connected" page.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from dashtam.core.tls import client_ssl_context, ensure_certificates
from tests.integration.connections.test_e2e_connect import (
    System,
    _create_user,
    login_and_connect,
)
from tests.support.live import LiveProcess, free_port

pytestmark = pytest.mark.smoke


def _wait(url: str, ca_file: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-4000:])
        try:
            with httpx.Client(verify=client_ssl_context(ca_file), timeout=2) as client:
                if client.get(url).status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready:\n{log.read_text(errors='replace')[-4000:]}")


class TestDevJourney:
    def test_dev_wires_the_simulator_so_demo_connects(self, tmp_root: Path) -> None:
        workdir = tmp_root / f"dev-{uuid.uuid4().hex[:8]}"
        certs = workdir / "certs"
        ensure_certificates(certs)
        ports = {"PORT": free_port(), "CALLBACK_PORT": free_port(), "SIMULATOR_PORT": free_port()}
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TEST_", "SCHWAB_", "SIMULATOR_", "DATABASE_", "REDIS_"))
        }
        env.update({k: str(v) for k, v in ports.items()})
        env.update({"CERTS_DIR": str(certs), "VAR_DIR": str(workdir / "var"), "LOG_LEVEL": "INFO"})
        log = workdir / "dev.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "dashtam", "dev"],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        ca_file = certs / "ca.pem"
        try:
            bases = {k: f"https://127.0.0.1:{v}" for k, v in ports.items()}
            for base in bases.values():
                _wait(f"{base}/health/live", ca_file, process, log)
            database_url = f"sqlite+aiosqlite:///{(workdir / 'var' / 'dashtam.db').as_posix()}"
            system = System(
                api=LiveProcess(bases["PORT"], ca_file, process, log),
                callback=LiveProcess(bases["CALLBACK_PORT"], ca_file, process, log),
                simulator=LiveProcess(bases["SIMULATOR_PORT"], ca_file, process, log),
                database_url=database_url,
                ca_file=ca_file,
            )
            email = asyncio.run(_create_user(database_url))

            provider_id, result, _ = login_and_connect(system, email)

            assert result.status_code == 200, result.text
            assert 'data-outcome="connected"' in result.text
            assert str(result.url).startswith(bases["CALLBACK_PORT"])
            assert provider_id in result.history[-1].headers["location"]
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
