"""Start Dashtam processes as real subprocesses over HTTPS, for smoke and end-to-end tests."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from dashtam.core.tls import client_ssl_context


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveProcess:
    """A running `dashtam <command>` child."""

    base_url: str
    ca_file: Path
    process: subprocess.Popen[bytes]
    log_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A context trusting exactly the generated CA."""
        return client_ssl_context(self.ca_file)

    def client(self, **kwargs: object) -> httpx.Client:
        """A client that trusts the generated CA (verification stays on)."""
        return httpx.Client(base_url=self.base_url, verify=self.ssl_context(), **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> httpx.AsyncClient:
        """An async client that trusts the generated CA."""
        return httpx.AsyncClient(base_url=self.base_url, verify=self.ssl_context(), **kwargs)  # type: ignore[arg-type]

    def logs(self) -> str:
        """Everything the process wrote so far."""
        return self.log_file.read_text(errors="replace")


@contextmanager
def run_dashtam(
    command: str,
    *,
    workdir: Path,
    env: Mapping[str, str],
    port: int | None = None,
    health_path: str = "/health/live",
    timeout: float = 30.0,
    extra_args: tuple[str, ...] = (),
) -> Iterator[LiveProcess]:
    """Run `python -m dashtam COMMAND --port N` in `workdir` until the block exits.

    Waits until `health_path` answers 200 over HTTPS (trusting `workdir/certs/ca.pem`).
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / f"{command}-{port}.log"
    full_env = {**os.environ, **env}
    full_env.setdefault("CERTS_DIR", str(workdir / "certs"))
    full_env.setdefault("VAR_DIR", str(workdir / "var"))
    ca_file = Path(full_env["CERTS_DIR"]) / "ca.pem"
    from dashtam.core.tls import ensure_certificates

    ensure_certificates(Path(full_env["CERTS_DIR"]))
    with log_file.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "dashtam", command, "--port", str(port), *extra_args],
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    live = LiveProcess(f"https://127.0.0.1:{port}", ca_file, process, log_file)
    try:
        _wait_ready(live, health_path, timeout)
        yield live
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(live: LiveProcess, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{live.logs()[-4000:]}")
        try:
            with live.client(timeout=2.0) as client:
                if client.get(path).status_code == 200:
                    return
        except httpx.HTTPError as exc:
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"not ready after {timeout}s ({last_error}):\n{live.logs()[-4000:]}")
