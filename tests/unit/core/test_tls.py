"""Local TLS material: a CA, a leaf for 127.0.0.1/localhost, private keys with mode 0600."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from dashtam.core.tls import ensure_certificates


class TestEnsureCertificates:
    def test_creates_ca_and_leaf_covering_local_names(self, tmp_path: Path) -> None:
        paths, written = ensure_certificates(tmp_path)
        assert written
        leaf = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
        assert paths.server_key.stat().st_mode & 0o777 == 0o600
        assert paths.ca_key.stat().st_mode & 0o777 == 0o600

    def test_leaf_verifies_against_the_ca(self, tmp_path: Path) -> None:
        paths, _ = ensure_certificates(tmp_path)
        context = ssl.create_default_context(cafile=str(paths.ca_cert))
        # Loading the chain as a server proves key and certificate match.
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(paths.server_cert, paths.server_key)
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        leaf = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        leaf.verify_directly_issued_by(ca)
        assert context.verify_mode == ssl.CERT_REQUIRED

    def test_second_call_keeps_valid_material(self, tmp_path: Path) -> None:
        paths, _ = ensure_certificates(tmp_path)
        before = paths.server_cert.read_bytes()
        _, written = ensure_certificates(tmp_path)
        assert not written
        assert paths.server_cert.read_bytes() == before

    def test_force_recreates_the_ca(self, tmp_path: Path) -> None:
        paths, _ = ensure_certificates(tmp_path)
        before = paths.ca_cert.read_bytes()
        ensure_certificates(tmp_path, force=True)
        assert paths.ca_cert.read_bytes() != before
