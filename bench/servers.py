"""Start the Dashtam API and reference apps as real HTTPS processes, wait for them, stop them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.tools import REPO_ROOT
from dashtam.core.tls import client_ssl_context

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 25.0


class ServerError(RuntimeError):
    """A server did not start, or died."""


@dataclass
class ServerProcess:
    """A running server child process."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def log_tail(self, chars: int = 3000) -> str:
        """The end of what the process wrote."""
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise when the process has exited."""
        if self.process.poll() is not None:
            raise ServerError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dashtam_command(port: int) -> list[str]:
    """`python -m dashtam api --port N` with this interpreter."""
    return [sys.executable, "-m", "dashtam", "api", "--port", str(port)]


def reference_command(app: str, port: int) -> list[str]:
    """The reference launcher for `app` (`module:factory`)."""
    return [sys.executable, "-m", "bench.reference.launcher", "--app", app, "--port", str(port)]


@contextmanager
def running_server(
    name: str,
    command: list[str],
    *,
    port: int,
    env: Mapping[str, str],
    ca_file: Path,
    log_dir: Path,
    ready_path: str,
) -> Iterator[ServerProcess]:
    """Run `command` until the block exits; yields once `ready_path` answers 200 over HTTPS.

    Raises:
        ServerError: When the process exits early or is not ready in time.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{name}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # our own interpreter and modules
            command, cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(name, f"https://127.0.0.1:{port}", process, log_file)
    try:
        _wait_ready(server, ready_path, ca_file)
        yield server
    finally:
        _stop(server)


def _wait_ready(server: ServerProcess, path: str, ca_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = "no answer"
    verify = client_ssl_context(ca_file)
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with httpx.Client(base_url=server.base_url, verify=verify, timeout=2.0) as client:
                status = client.get(path).status_code
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            last_error = str(exc) or type(exc).__name__
        time.sleep(0.1)
    raise ServerError(
        f"{server.name} not ready after {READY_TIMEOUT_S:.0f}s ({last_error}):\n{server.log_tail()}"
    )


def _stop(server: ServerProcess) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it hangs."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"  {server.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s; killing it")
            server.process.kill()
            server.process.wait(timeout=10)
