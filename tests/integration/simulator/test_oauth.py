"""The simulator's OAuth over HTTP: login form, redirects, token grants and every error path."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.simulator import (
    CLIENT_ID,
    REDIRECT_URI,
    basic_auth,
    bearer,
    browser_login,
    exchange_code,
    login_tokens,
    simulator_client,
)


async def refresh(sim: httpx.AsyncClient, token: str) -> httpx.Response:
    return await sim.post(
        "/v1/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers=basic_auth(),
    )


async def advance(sim: httpx.AsyncClient, seconds: float) -> None:
    response = await sim.post("/control/clock", json={"advance_seconds": seconds})
    assert response.status_code == 200


def assert_dead_refresh(response: httpx.Response, token: str) -> None:
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unsupported_token_type"
    description = body["error_description"]
    assert description.startswith('400 Bad Request: "{') and description.endswith('}"')
    inner = json.loads(description[len('400 Bad Request: "') : -1])
    assert inner["error"] == "refresh_token_authentication_error"
    assert "tokenDigest=" in inner["error_description"]
    assert token not in response.text


class TestAuthorizePage:
    async def test_renders_a_login_form_carrying_client_redirect_and_escaped_state(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.get(
                "/v1/oauth/authorize",
                params={
                    "client_id": CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "state": '"><script>alert(1)</script>',
                    "response_type": "code",
                },
            )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert 'name="username"' in page and 'name="password"' in page
        assert 'value="cancel"' in page
        assert f'name="client_id" value="{CLIENT_ID}"' in page
        assert "<script>" not in page
        assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    async def test_unknown_client_gets_an_error_page_not_a_redirect(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.get(
                "/v1/oauth/authorize",
                params={"client_id": "nope", "redirect_uri": REDIRECT_URI},
            )
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Unknown application" in response.text

    async def test_redirect_uri_must_match_exactly(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            for uri in (REDIRECT_URI + "/", "https://127.0.0.1:8183", "https://evil.example"):
                response = await sim.get(
                    "/v1/oauth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": uri}
                )
                assert response.status_code == 400, uri
                assert "location" not in response.headers
                assert "not registered" in response.text

    async def test_unencoded_redirect_uri_is_accepted(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.get(
                f"/v1/oauth/authorize?client_id={CLIENT_ID}&redirect_uri={REDIRECT_URI}"
            )
        assert response.status_code == 200


class TestLoginSubmit:
    async def test_good_login_redirects_with_code_session_and_state(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.post(
                "/v1/oauth/authorize",
                data={
                    "client_id": CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "state": "s t&a=te",
                    "username": "demo",
                    "password": "demo-password",
                    "action": "login",
                },
            )
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI + "?code=C0.")
        assert "%40&" in location  # the trailing @ arrives percent-encoded
        query = parse_qs(urlsplit(location).query)
        assert re.fullmatch(r"C0\.[A-Za-z0-9+/=]+\.[A-Za-z0-9_-]{43}@", query["code"][0])
        assert re.fullmatch(r"[0-9a-f-]{36}", query["session"][0])
        assert query["state"] == ["s t&a=te"]

    async def test_wrong_password_shows_the_form_again_with_an_error(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.post(
                "/v1/oauth/authorize",
                data={
                    "client_id": CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "state": "abc",
                    "username": "demo<b>",
                    "password": "wrong",
                    "action": "login",
                },
            )
        assert response.status_code == 200
        assert "incorrect" in response.text
        assert 'value="demo&lt;b&gt;"' in response.text
        assert 'name="state" value="abc"' in response.text
        assert "location" not in response.headers

    async def test_cancel_redirects_with_access_denied_and_state(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.post(
                "/v1/oauth/authorize",
                data={
                    "client_id": CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "state": "abc",
                    "action": "cancel",
                },
            )
        assert response.status_code == 302
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query == {"error": ["access_denied"], "state": ["abc"]}

    async def test_forged_post_with_unregistered_redirect_is_refused(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.post(
                "/v1/oauth/authorize",
                data={
                    "client_id": CLIENT_ID,
                    "redirect_uri": "https://evil.example",
                    "username": "demo",
                    "password": "demo-password",
                    "action": "login",
                },
            )
        assert response.status_code == 400
        assert "location" not in response.headers


class TestCodeExchange:
    async def test_happy_path_returns_schwab_shaped_tokens(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            code, state = await browser_login(sim, state="xyz")
            response = await sim.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "client_id": CLIENT_ID,
                },
                headers=basic_auth(),
            )
            assert response.status_code == 200
            body = response.json()
            assert state == "xyz"
            assert list(body) == [
                "expires_in",
                "token_type",
                "scope",
                "refresh_token",
                "access_token",
                "id_token",
            ]
            assert body["expires_in"] == 1800 and body["token_type"] == "Bearer"
            assert re.fullmatch(r"I0\.[A-Za-z0-9+/=]+\.[A-Za-z0-9_-]{43}@", body["access_token"])
            assert body["id_token"].count(".") == 2
            assert response.headers["cache-control"] == "no-store"
            accounts = await sim.get("/trader/v1/accounts/accountNumbers", headers=bearer(body))
            assert accounts.status_code == 200

    async def test_code_is_single_use(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            code, _ = await browser_login(sim)
            await exchange_code(sim, code)
            again = await sim.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                },
                headers=basic_auth(),
            )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"

    async def test_code_expires_after_30_simulated_seconds(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            code, _ = await browser_login(sim)
            await advance(sim, 31)
            response = await sim.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                },
                headers=basic_auth(),
            )
            assert response.status_code == 400
            assert response.json() == {
                "error": "invalid_grant",
                "error_description": "Authorization code has expired",
            }
            fresh, _ = await browser_login(sim)
            await advance(sim, 29)
            await exchange_code(sim, fresh)

    async def test_redirect_uri_must_match_the_authorization(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            code, _ = await browser_login(sim)
            response = await sim.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI + "/",
                },
                headers=basic_auth(),
            )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"

    async def test_percent_encoded_code_is_not_decoded_for_the_client(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            code, _ = await browser_login(sim)
            response = await sim.post(
                "/v1/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code.replace("@", "%40"),
                    "redirect_uri": REDIRECT_URI,
                },
                headers=basic_auth(),
            )
        assert response.status_code == 400

    async def test_bad_client_authentication_is_invalid_client_401(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            code, _ = await browser_login(sim)
            data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
            bad_headers = [
                {},
                basic_auth(secret="wrong"),
                basic_auth(client_id="other"),
                {"Authorization": "Basic !!!not-base64"},
                {"Authorization": "Bearer " + base64.b64encode(b"a:b").decode()},
            ]
            for headers in bad_headers:
                response = await sim.post("/v1/oauth/token", data=data, headers=headers)
                assert response.status_code == 401, headers
                assert response.json() == {
                    "error": "invalid_client",
                    "error_description": "Unauthorized",
                }
            mismatched = await sim.post(
                "/v1/oauth/token", data={**data, "client_id": "other"}, headers=basic_auth()
            )
            assert mismatched.status_code == 401
            # None of the failures consumed the code.
            await exchange_code(sim, code)

    async def test_unsupported_and_missing_grant_types(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            response = await sim.post(
                "/v1/oauth/token", data={"grant_type": "client_credentials"}, headers=basic_auth()
            )
            assert response.status_code == 400
            assert response.json()["error"] == "unsupported_grant_type"
            missing = await sim.post("/v1/oauth/token", data={}, headers=basic_auth())
            assert missing.status_code == 400
            assert missing.json()["error"] == "invalid_request"
            no_code = await sim.post(
                "/v1/oauth/token",
                data={"grant_type": "authorization_code"},
                headers=basic_auth(),
            )
            assert no_code.json()["error"] == "invalid_request"


class TestRefreshGrant:
    async def test_same_mode_returns_the_same_refresh_token_and_a_new_access_token(
        self, tmp_path: Path
    ) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)
            response = await refresh(sim, tokens["refresh_token"])
            assert response.status_code == 200
            body = response.json()
            assert body["refresh_token"] == tokens["refresh_token"]
            assert body["access_token"] != tokens["access_token"]
            assert body["expires_in"] == 1800

    async def test_rotate_mode_via_control_kills_the_old_value(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)
            mode = await sim.put("/control/refresh-mode", json={"mode": "rotate"})
            assert mode.json()["refresh_mode"] == "rotate"
            rotated = (await refresh(sim, tokens["refresh_token"])).json()["refresh_token"]
            assert rotated != tokens["refresh_token"]
            assert_dead_refresh(
                await refresh(sim, tokens["refresh_token"]), tokens["refresh_token"]
            )
            assert (await refresh(sim, rotated)).status_code == 200

    async def test_omit_mode_from_settings_leaves_the_field_out(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path, simulator_refresh_mode="omit") as sim:
            tokens = await login_tokens(sim)
            body = (await refresh(sim, tokens["refresh_token"])).json()
            assert "refresh_token" not in body and "access_token" in body

    async def test_seven_day_wall_is_not_moved_by_refreshing(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)
            for _ in range(6):
                await advance(sim, 86_400)
                assert (await refresh(sim, tokens["refresh_token"])).status_code == 200
            await advance(sim, 86_400)
            assert_dead_refresh(
                await refresh(sim, tokens["refresh_token"]), tokens["refresh_token"]
            )

    async def test_access_token_dies_after_30_minutes(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)
            await advance(sim, 1799)
            ok = await sim.get("/trader/v1/userPreference", headers=bearer(tokens))
            assert ok.status_code == 200
            await advance(sim, 1)
            expired = await sim.get("/trader/v1/userPreference", headers=bearer(tokens))
            assert expired.status_code == 401

    async def test_a_new_login_invalidates_the_older_refresh_token(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            first = await login_tokens(sim)
            second = await login_tokens(sim)
            assert_dead_refresh(await refresh(sim, first["refresh_token"]), first["refresh_token"])
            assert (await refresh(sim, second["refresh_token"])).status_code == 200

    async def test_unknown_and_missing_refresh_tokens(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            assert_dead_refresh(await refresh(sim, "made-up@"), "made-up@")
            missing = await sim.post(
                "/v1/oauth/token", data={"grant_type": "refresh_token"}, headers=basic_auth()
            )
            assert missing.status_code == 400
            assert missing.json()["error"] == "invalid_request"


class TestTokenControl:
    async def test_expire_access_revoke_and_expire_refresh(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            tokens = await login_tokens(sim)
            expire = await sim.post("/control/users/demo/tokens", json={"action": "expire-access"})
            assert expire.json()["affected"] == 1
            denied = await sim.get("/trader/v1/userPreference", headers=bearer(tokens))
            assert denied.status_code == 401
            assert (await refresh(sim, tokens["refresh_token"])).status_code == 200
            await sim.post("/control/users/demo/tokens", json={"action": "revoke-refresh"})
            assert_dead_refresh(
                await refresh(sim, tokens["refresh_token"]), tokens["refresh_token"]
            )
            again = await login_tokens(sim)
            await sim.post("/control/users/demo/tokens", json={"action": "expire-refresh"})
            assert_dead_refresh(await refresh(sim, again["refresh_token"]), again["refresh_token"])

    async def test_unknown_user_and_action(self, tmp_path: Path) -> None:
        async with simulator_client(tmp_path) as sim:
            missing = await sim.post(
                "/control/users/nobody/tokens", json={"action": "expire-access"}
            )
            assert missing.status_code == 404
            bad = await sim.post("/control/users/demo/tokens", json={"action": "explode"})
            assert bad.status_code == 422
