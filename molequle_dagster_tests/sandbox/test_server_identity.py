"""Identity over real HTTP (docs/marketo.md §2): one live token per client, countdown on the virtual clock,
401, 602→601."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import CREDENTIALS, NOW

USAGE = "/rest/v1/stats/usage.json"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig.for_profile("fast"), now=NOW, state=empty_state(1, NOW)) as server:
        yield server


def token(sandbox: SandboxServer, **overrides: str) -> requests.Response:
    return requests.get(
        f"{sandbox.base_url}/identity/oauth/token", params={**CREDENTIALS, **overrides}, timeout=10
    )


def call(sandbox: SandboxServer, access_token: str | None, path: str = USAGE) -> dict:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return requests.get(f"{sandbox.base_url}{path}", headers=headers, timeout=10).json()


def test_token_body_matches_the_documented_shape(sandbox: SandboxServer) -> None:
    response = token(sandbox)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3599  # fresh tokens report lifetime - 1, like the captured responses
    assert body["scope"] == "molequle@sandbox"
    assert response.headers["content-type"].startswith("application/json")


def test_same_token_until_expiry_with_countdown(sandbox: SandboxServer) -> None:
    first = token(sandbox).json()
    sandbox.control.advance(600)
    second = token(sandbox).json()
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] == 2999
    sandbox.control.advance(3000)
    third = token(sandbox).json()
    assert third["access_token"] != first["access_token"]
    assert third["expires_in"] == 3599


def test_tokens_are_per_client_and_map_to_api_users(sandbox: SandboxServer) -> None:
    mine = token(sandbox).json()
    other = token(sandbox, client_id="other-integration", client_secret="other-secret").json()
    assert mine["access_token"] != other["access_token"]
    assert other["scope"] == "other@sandbox"
    call(sandbox, mine["access_token"])
    usage = call(sandbox, other["access_token"])["result"][0]
    assert {u["userId"]: u["count"] for u in usage["users"]} == {"molequle@sandbox": 1, "other@sandbox": 1}


def test_form_post_is_accepted(sandbox: SandboxServer) -> None:
    response = requests.post(f"{sandbox.base_url}/identity/oauth/token", data=CREDENTIALS, timeout=10)
    assert response.status_code == 200
    assert response.json()["scope"] == "molequle@sandbox"


@pytest.mark.parametrize(
    "override", [{"client_secret": "wrong"}, {"client_id": "nobody"}, {"grant_type": "password"}]
)
def test_bad_credentials_get_401_oauth_body(sandbox: SandboxServer, override: dict) -> None:
    response = token(sandbox, **override)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}
    assert "wrong" not in str(sandbox.control.request_log())  # secrets never logged


def test_expired_token_first_602_then_601(sandbox: SandboxServer) -> None:
    access = token(sandbox).json()["access_token"]
    assert call(sandbox, access)["success"] is True
    sandbox.control.advance(3600)
    assert call(sandbox, access)["errors"] == [{"code": "602", "message": "Access token expired"}]
    assert call(sandbox, access)["errors"] == [{"code": "601", "message": "Access token invalid"}]


def test_unknown_or_missing_token_is_601_and_not_counted(sandbox: SandboxServer) -> None:
    assert call(sandbox, "not-a-token")["errors"][0]["code"] == "601"
    assert call(sandbox, None)["errors"][0]["code"] == "601"
    access = token(sandbox).json()["access_token"]
    usage = call(sandbox, access)["result"][0]
    assert usage["total"] == 1  # only this call: 601s and identity calls are not counted
    assert sandbox.control.call_counts()["GET /identity/oauth/token"] == 1


def test_query_param_token_only_behind_the_flag() -> None:
    for accept, expected in ((False, False), (True, True)):
        config = SandboxConfig.for_profile("fast")
        config.tokens.accept_query_param = accept
        with SandboxServer(config, now=NOW, state=empty_state(1, NOW)) as sandbox:
            access = token(sandbox).json()["access_token"]
            body = requests.get(
                f"{sandbox.base_url}{USAGE}", params={"access_token": access}, timeout=10
            ).json()
            assert body["success"] is expected
            assert access not in str(sandbox.control.request_log())


def test_expire_tokens_control_forces_602(sandbox: SandboxServer) -> None:
    access = token(sandbox).json()["access_token"]
    sandbox.control.expire_tokens()
    assert call(sandbox, access)["errors"][0]["code"] == "602"
    assert token(sandbox).json()["access_token"] != access
