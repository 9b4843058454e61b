"""Container health probe for Dashtam processes, using only the standard library.

    python /opt/dashtam/healthcheck.py                      # the API: https://127.0.0.1:$PORT/health/live
    python /opt/dashtam/healthcheck.py https://127.0.0.1:8182/health/live
    python /opt/dashtam/healthcheck.py --tcp redis:6379      # a dependency is reachable (worker)

HTTPS is verified against TLS_CA_FILE (default certs/ca.pem under the working directory) — the
probe never switches verification off. Exit status 0 means healthy, 1 unhealthy.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.request
from urllib.parse import urlsplit


def _default_url() -> str:
    tls_off = os.environ.get("TLS_ENABLED", "true").lower() in {"0", "false", "no", "off"}
    scheme = "http" if tls_off else "https"
    return f"{scheme}://127.0.0.1:{os.environ.get('PORT', '8000')}/health/live"


def check_http(url: str, timeout: float = 4.0) -> bool:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    context = None
    if url.startswith("https://"):
        ca_file = os.environ.get("TLS_CA_FILE") or os.path.join(
            os.environ.get("CERTS_DIR", "certs"), "ca.pem"
        )
        context = ssl.create_default_context(cafile=ca_file)
    request = urllib.request.Request(url, headers={"User-Agent": "dashtam-healthcheck"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
        return bool(response.status == 200)


def check_tcp(target: str, timeout: float = 3.0) -> bool:
    if "://" in target:  # accept a URL such as REDIS_URL
        parts = urlsplit(target)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    else:
        host, _, port_text = target.rpartition(":")
        port = int(port_text)
    with socket.create_connection((host, port), timeout=timeout):
        return True


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--tcp"]:
            target = argv[1] if len(argv) > 1 else os.environ.get("REDIS_URL", "")
            ok = check_tcp(target)
        else:
            ok = check_http(argv[0] if argv else _default_url())
    except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
        sys.stderr.write(f"unhealthy: {type(exc).__name__}: {exc}\n")
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
