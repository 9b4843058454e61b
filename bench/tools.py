"""External tools and machine facts: make sure wrk is installed, describe the machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.scenarios.base import usable_cores

REPO_ROOT = Path(__file__).resolve().parents[1]


class ToolError(RuntimeError):
    """A tool the harness needs is missing and could not be installed."""


def ensure_wrk() -> str:
    """Return the path of `wrk`, installing Debian's package when it is missing.

    Raises:
        ToolError: When wrk is absent and `apt-get` cannot install it.
    """
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found; installing it with apt-get (Debian package `wrk`)…", flush=True)
    apt = shutil.which("apt-get")
    if apt is None:
        raise ToolError("wrk is not installed and apt-get is unavailable: install wrk yourself")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for step in (["update"], ["install", "-y", "wrk"]):
        try:
            done = subprocess.run(
                [*prefix, apt, *step], capture_output=True, text=True, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolError(f"`apt-get {' '.join(step)}` failed: {exc}") from exc
        if done.returncode != 0:
            raise ToolError(
                f"`apt-get {' '.join(step)}` failed (exit {done.returncode}); install wrk "
                f"yourself (`sudo apt-get install wrk`).\n{done.stderr.strip()[-1500:]}"
            )
    found = shutil.which("wrk")
    if not found:
        raise ToolError("apt-get reported success but wrk is still not on PATH")
    return found


def wrk_version() -> str:
    """wrk's version line (it prints it on `-v`, with exit status 1)."""
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    # e.g. "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer" -> "wrk 4.1.0-3+b2"
    words = (done.stdout or done.stderr).split()
    if len(words) < 2 or words[0] != "wrk":
        return "wrk (unknown version)"
    return f"wrk {words[1].rsplit('/', 1)[-1]}"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, when readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """The checked-out commit (with `+dirty` when the tree has changes), or `unknown`."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def server_stack() -> str:
    """The uvicorn loop/HTTP implementations its `auto` setting picks here."""
    import importlib.util

    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__} ({loop}, {http})"


def parse_runnable(loadavg_line: str) -> int:
    """Runnable tasks right now from a `/proc/loadavg` line (`0.5 0.4 0.3 2/345 678`)."""
    return int(loadavg_line.split()[3].split("/")[0])


def other_runnable(samples: int = 5, interval_s: float = 0.1) -> float | None:
    """Average number of other tasks wanting a CPU, sampled over a moment while idle.

    Read before a scenario starts its servers: anything above ~0.5 means other processes
    compete for the cores and the numbers will be noisy. `None` where `/proc` is missing.
    """
    counts = []
    for index in range(samples):
        try:
            line = Path("/proc/loadavg").read_text()
        except OSError:
            return None
        # The reading process itself is runnable while it reads.
        counts.append(max(0, parse_runnable(line) - 1))
        if index < samples - 1:
            time.sleep(interval_s)
    return sum(counts) / len(counts)


def machine_facts(backend: str) -> dict[str, Any]:
    """What a reader needs to compare runs: cores, CPU, Python, backend, tool versions."""
    return {
        "cores": usable_cores(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(terse=True),
        "backend": backend,
        "server": server_stack(),
        "wrk": wrk_version(),
        "commit": git_commit(),
    }
