"""The `dashtam` command line: version, keys, certs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from dashtam import __version__
from dashtam.cli import app
from dashtam.core.config import Settings

runner = CliRunner()


class TestVersion:
    def test_prints_the_package_version(self) -> None:
        result = runner.invoke(app, ["version"])
        assert result.exit_code == 0
        assert result.stdout.strip() == __version__


class TestKeys:
    def test_prints_fresh_usable_secrets(self, tmp_path: Path) -> None:
        first = runner.invoke(app, ["keys"]).stdout
        second = runner.invoke(app, ["keys"]).stdout
        assert first != second
        values = dict(line.split("=", 1) for line in first.strip().splitlines())
        settings = Settings(
            environment="production",
            secret_key=values["SECRET_KEY"],
            encryption_keys=values["ENCRYPTION_KEYS"],
            var_dir=tmp_path,
        )
        assert settings.ensure_secrets() is settings


class TestCerts:
    def test_extra_hosts_are_added_to_the_certificate(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("TLS_EXTRA_HOSTS", raising=False)
        result = runner.invoke(
            app, ["certs", "--directory", str(tmp_path), "--host", "app", "--host", "10.0.0.5"]
        )
        assert result.exit_code == 0, result.stdout
        leaf = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "app"} <= set(san.get_values_for_type(x509.DNSName))
        assert ipaddress.ip_address("10.0.0.5") in san.get_values_for_type(x509.IPAddress)
        again = runner.invoke(
            app, ["certs", "--directory", str(tmp_path), "--host", "app", "--host", "10.0.0.5"]
        )
        assert "already valid" in again.stdout
