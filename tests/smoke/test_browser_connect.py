"""Connect an institution in a real headless browser (Debian's Chromium via Playwright).

Skipped, with the reason, when `/usr/bin/chromium` is absent (`scripts/ci-install-browser.sh`
installs it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.integration.connections.test_e2e_connect import _create_user, live_system
from tests.support.factories import KNOWN_PASSWORD

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.smoke,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs /usr/bin/chromium (run scripts/ci-install-browser.sh)",
    ),
]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _start_authorization(system: object, email: str) -> tuple[str, str, dict[str, str]]:
    from tests.integration.connections.test_e2e_connect import System

    assert isinstance(system, System)
    with system.api.client(timeout=30) as api:
        login = api.post("/api/v1/auth/login", json={"email": email, "password": KNOWN_PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = api.post(
            "/api/v1/providers",
            json={"provider_key": "schwab", "alias": "Browser"},
            headers=headers,
        )
        provider_id = created.json()["id"]
        started = api.post(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
        assert started.status_code == 201, started.text
        return provider_id, started.json()["authorization_url"], headers


def _spki_pin(workdir: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the local server certificate."""
    cert = x509.load_pem_x509_certificate((workdir / "certs" / "server.pem").read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class TestBrowserConnect:
    def test_person_logs_in_at_the_institution_and_sees_connected(self, tmp_root: Path) -> None:
        from playwright.sync_api import sync_playwright

        workdir = tmp_root / f"browser-{uuid.uuid4().hex[:8]}"
        with live_system(workdir) as system:
            email = asyncio.run(_create_user(system.database_url))
            provider_id, authorization_url, headers = _start_authorization(system, email)

            with sync_playwright() as playwright:
                # A fresh profile per run; certificate checks stay on, and only our own
                # server key is additionally trusted (by its SPKI pin).
                context = playwright.chromium.launch_persistent_context(
                    str(workdir / "chromium-profile"),
                    executable_path=str(CHROMIUM),
                    args=[
                        *CHROMIUM_ARGS,
                        f"--ignore-certificate-errors-spki-list={_spki_pin(workdir)}",
                    ],
                    headless=True,
                )
                page = context.new_page()
                page.goto(authorization_url)
                page.fill("#username", "demo")
                page.fill("#password", "demo-password")
                with page.expect_navigation(url=f"{system.callback.base_url}/**"):
                    page.click("button[value=login]")
                page.wait_for_selector("#result")
                outcome = page.get_attribute("#result", "data-outcome")
                heading = page.inner_text("#result")
                landed_on = page.url
                context.close()

            assert landed_on.startswith(system.callback.base_url)
            assert outcome == "connected", page.content() if outcome else heading
            assert heading == "Connected"
            with system.api.client(timeout=30) as api:
                status = api.get(f"/api/v1/providers/{provider_id}/authorization", headers=headers)
            assert status.json()["status"] == "active"
