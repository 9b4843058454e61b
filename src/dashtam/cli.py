"""The `dashtam` command line: serve, migrate, make certificates and keys, run everything."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Literal

import typer

from dashtam import __version__
from dashtam.core.config import (
    ConfigurationError,
    Settings,
    generate_encryption_key,
    generate_secret_key,
    load_settings,
)

app = typer.Typer(
    help="Dashtam: aggregate a person's financial data behind one secure API.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Secrets: print fresh ones, or rotate the token-vault key.")
app.add_typer(keys_app, name="keys")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc


def tls_files(settings: Settings) -> tuple[str, str] | None:
    """Certificate and key paths to serve with, creating local ones outside production."""
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert_file is not None
    assert settings.tls_key_file is not None
    if not settings.tls_cert_file.exists() and not settings.is_production:
        from dashtam.core.tls import ensure_certificates

        ensure_certificates(settings.certs_dir, hosts=settings.certificate_hosts)
    if not settings.tls_cert_file.exists() or not settings.tls_key_file.exists():
        typer.secho(
            f"error: TLS certificate {settings.tls_cert_file} or key is missing "
            "(run `dashtam certs`, or set TLS_CERT_FILE / TLS_KEY_FILE)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    return str(settings.tls_cert_file), str(settings.tls_key_file)


def serve(
    factory: str,
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    reload: bool = False,
) -> None:
    """Run a uvicorn server for an app factory over HTTPS (unless TLS is disabled)."""
    import uvicorn

    from dashtam.core.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    tls = tls_files(settings)
    _exit_zero_after_sigterm()
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        timeout_graceful_shutdown=20,
    )


def _exit_zero_after_sigterm() -> None:
    """Make a drained SIGTERM end the process with status 0.

    On SIGTERM uvicorn stops accepting, finishes in-flight requests, runs the lifespan
    shutdown, then restores the previous handler and raises the signal again. With the default
    handler that kills the process (status -15), which supervisors read as a crash. This
    handler is that previous one: it turns the re-raised signal into a clean exit.
    """

    def exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_cleanly)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes.")] = False,
) -> None:
    """Serve the REST API over HTTPS."""
    settings = _settings()
    serve(
        "dashtam.main:create_app",
        settings,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to REVISION.")] = False,
) -> None:
    """Apply (or revert) database migrations."""
    from dashtam.core.migrations import downgrade, upgrade_to_head

    settings = _settings()
    url = settings.effective_database_url
    if down:
        downgrade(url, revision)
    else:
        upgrade_to_head(url, revision)
    typer.echo(f"database at {revision}{' (downgraded)' if down else ''}")


@app.command()
def certs(
    directory: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="Extra name or IP for the certificate (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Re-create the CA too.")] = False,
) -> None:
    """Create a local CA and a server certificate for 127.0.0.1 / localhost (+ extra hosts)."""
    from dashtam.core.tls import ensure_certificates

    settings = Settings()
    hosts = settings.certificate_hosts + tuple(h for h in host or [] if h)
    paths, written = ensure_certificates(
        directory or settings.certs_dir, hosts=tuple(dict.fromkeys(hosts)), force=force
    )
    state = "written" if written else "already valid"
    typer.echo(f"{state}: CA {paths.ca_cert}, server {paths.server_cert}")


@keys_app.callback(invoke_without_command=True)
def keys(ctx: typer.Context) -> None:
    """Print fresh secrets for SECRET_KEY and ENCRYPTION_KEYS."""
    if ctx.invoked_subcommand is None:
        typer.echo(f"SECRET_KEY={generate_secret_key()}")
        typer.echo(f"ENCRYPTION_KEYS={generate_encryption_key('k1')}")


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per commit.")] = 100,
) -> None:
    """Re-encrypt every stored institution token with the newest ENCRYPTION_KEYS key.

    Resumable: each batch commits on its own and rows already on the newest key are skipped,
    so an interrupted run continues where it stopped.
    """
    from dashtam.services.connections.keys_command import run_key_rotation

    settings = _settings()
    raise typer.Exit(code=asyncio.run(run_key_rotation(settings, batch_size=batch_size)))


@app.command()
def callback(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Serve the OAuth callback server (the redirect URI institutions call) over HTTPS."""
    settings = _settings()
    serve(
        "dashtam.callback.app:create_callback_app",
        settings,
        host=host or settings.callback_host,
        port=port or settings.callback_port,
    )


@app.command()
def dev() -> None:
    """Run the whole system on the embedded backends in one terminal."""
    import os

    from dashtam.devserver import run_dev

    # One terminal for people: readable lines unless the operator asked for JSON.
    os.environ.setdefault("LOG_FORMAT", "console")
    settings = _settings()
    raise typer.Exit(code=asyncio.run(run_dev(settings)))


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once (default WORKER_CONCURRENCY).")
    ] = None,
    scheduler: Annotated[
        bool, typer.Option(help="Also run the scheduler (periodic syncs, refresh-ahead).")
    ] = True,
) -> None:
    """Run background jobs (syncs, token refreshes) from Redis, plus the scheduler."""
    from dashtam.core.logging import configure_logging
    from dashtam.jobs.worker import run_worker

    settings = _settings()
    # Structured (and redacted) logs, as in `serve()`: every job line carries its job context.
    configure_logging(settings.log_level, settings.log_format)
    try:
        code = asyncio.run(run_worker(settings, concurrency=concurrency, scheduler=scheduler))
    except ConfigurationError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    raise typer.Exit(code=code)


@app.command("sync")
def sync_command(
    provider_id: Annotated[str, typer.Argument(help="The provider (connection) id.")],
) -> None:
    """Sync one provider now, in the foreground, with a progress bar."""
    import uuid

    from dashtam.services.sync.commands import run_sync_command

    try:
        parsed = uuid.UUID(provider_id)
    except ValueError as exc:
        typer.secho(f"error: not a provider id: {provider_id!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    raise typer.Exit(code=asyncio.run(run_sync_command(_settings(), parsed)))


@app.command("export")
def export_command(
    user: Annotated[str, typer.Option("--user", help="The user's email address.")],
    output_format: Annotated[
        str, typer.Option("--format", help="`csv` (exact decimals) or `ofx` (OFX 2.2).")
    ] = "csv",
    output: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
) -> None:
    """Export a user's transactions as CSV or OFX."""
    from dashtam.services.sync.commands import run_export_command

    if output_format not in ("csv", "ofx"):
        typer.secho("error: --format must be csv or ofx", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    fmt: Literal["csv", "ofx"] = "csv" if output_format == "csv" else "ofx"
    raise typer.Exit(
        code=asyncio.run(run_export_command(_settings(), email=user, fmt=fmt, output=output))
    )


@app.command()
def simulator(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Serve the Schwab-compatible simulator (OAuth + Trader API) over HTTPS."""
    settings = _settings()
    serve(
        "dashtam.simulator.app:create_simulator_app",
        settings,
        host=host or settings.simulator_host,
        port=port or settings.simulator_port,
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()
