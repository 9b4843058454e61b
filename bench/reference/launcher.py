"""Serve a reference app exactly the way `dashtam.cli.serve` serves Dashtam.

Same uvicorn arguments (TLS files, default loop and HTTP implementation, one worker, no access
log, logging configured by Dashtam's own function at the same level), so the only difference
between the two measurements is the application.

Usage: `python -m bench.reference.launcher --app bench.reference.health:create_app --port N`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def uvicorn_kwargs(
    app: str, *, host: str, port: int, certfile: str | None, keyfile: str | None
) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run`, mirroring `dashtam.cli.serve`.

    A unit test compares these with what `serve` passes, so the two cannot drift apart.

    Args:
        app: `module:factory` of the app factory.
        host: Bind address.
        port: Port.
        certfile: Server certificate chain (`None` serves plain HTTP).
        keyfile: Its private key.

    Returns:
        The arguments, `app` included.
    """
    return {
        "app": app,
        "factory": True,
        "host": host,
        "port": port,
        "workers": 1,
        "reload": False,
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # Dashtam enables these only with TRUSTED_PROXIES set; the harness never sets it.
        "proxy_headers": False,
        "forwarded_allow_ips": None,
        "timeout_graceful_shutdown": 20,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", required=True, help="module:factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certs-dir", default=os.environ.get("CERTS_DIR", "certs"))
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "WARNING"))
    parser.add_argument("--log-format", default=os.environ.get("LOG_FORMAT", "json"))
    args = parser.parse_args(argv)

    import uvicorn

    from dashtam.core.logging import configure_logging

    configure_logging(args.log_level.upper(), args.log_format)
    certs = Path(args.certs_dir)
    uvicorn.run(
        **uvicorn_kwargs(
            args.app,
            host=args.host,
            port=args.port,
            certfile=str(certs / "server.pem"),
            keyfile=str(certs / "server-key.pem"),
        )
    )


if __name__ == "__main__":
    main()
