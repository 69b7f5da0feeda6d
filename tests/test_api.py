"""The HTTP API contract: rooms, tokens, health, and the pages links open."""

from __future__ import annotations

import pytest
from conftest import ServerProcess
from yclient import YClient


async def test_create_get_and_mint_tokens(server: ServerProcess) -> None:
    created = server.api(
        "POST",
        "/api/rooms",
        {"kind": "solo", "language": "python", "files": {"main.py": "x = 1\n"}},
    )
    assert created.status_code == 201
    room = created.json()
    assert room["kind"] == "solo" and room["language"] == "python" and room["id"]
    fetched = server.api("GET", f"/api/rooms/{room['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["id"] == room["id"]

    minted = server.api(
        "POST",
        f"/api/rooms/{room['id']}/tokens",
        {"role": "candidate", "name": "Ada", "ttl_seconds": 600},
    )
    assert minted.status_code == 201
    body = minted.json()
    assert body["url"] == f"{server.url}/rooms/{room['id']}?token={body['token']}"
    assert body["role"] == "candidate" and body["name"] == "Ada"
    client = await YClient(server.ws_url(room["id"], body["token"])).connect()
    assert client.text == "x = 1\n"
    await client.close()


async def test_default_room_has_an_empty_main_py(server: ServerProcess) -> None:
    room = server.create_room()
    client = await YClient(server.ws_url(room, server.token(room))).connect()
    assert {name: str(text) for name, text in client.files.items()} == {"main.py": ""}
    await client.close()


def test_health(server: ServerProcess) -> None:
    response = server.api("GET", "/healthz", key=None)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("key", "detail"), [(None, "Authorization: Bearer"), ("wrong", "wrong admin key")]
)
def test_admin_key_is_required(server: ServerProcess, key: str | None, detail: str) -> None:
    for method, path in [
        ("POST", "/api/rooms"),
        ("GET", "/api/rooms/x"),
        ("POST", "/api/rooms/x/tokens"),
    ]:
        response = server.api(method, path, {"kind": "live"}, key=key)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"kind": "group"}, "kind must be"),
        ({"language": "Python 3!"}, "language must be"),
        ({"files": ["main.py"]}, "files must be an object"),
        ({"files": {"../etc/passwd": "x"}}, "not a relative path"),
        ({"files": {"/abs.py": "x"}}, "not a relative path"),
        ({"files": {"a.py": 3}}, "content must be text"),
        ({"seed_from": 42}, "seed_from must be"),
    ],
)
def test_bad_room_requests_are_400(
    server: ServerProcess, body: dict[str, object], detail: str
) -> None:
    response = server.api("POST", "/api/rooms", body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_bad_json_is_400(server: ServerProcess) -> None:
    import httpx

    response = httpx.post(
        server.url + "/api/rooms",
        content=b"{nope",
        headers={"authorization": "Bearer test-admin-key"},
    )
    assert response.status_code == 400
    assert "must be JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"role": "admin"}, "role must be one of"),
        ({"role": "candidate", "name": ""}, "name must be"),
        ({"role": "candidate", "ttl_seconds": 0}, "ttl_seconds must be"),
        ({"role": "candidate", "ttl_seconds": 10**9}, "ttl_seconds must be"),
    ],
)
def test_bad_token_requests_are_400(
    server: ServerProcess, body: dict[str, object], detail: str
) -> None:
    room = server.create_room()
    response = server.api("POST", f"/api/rooms/{room}/tokens", body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_unknown_room_is_404(server: ServerProcess) -> None:
    assert server.api("GET", "/api/rooms/nope").status_code == 404
    assert server.api("POST", "/api/rooms/nope/tokens", {"role": "candidate"}).status_code == 404


def test_link_pages_explain_what_is_wrong(server: ServerProcess) -> None:
    import httpx

    room = server.create_room()
    good = httpx.get(f"{server.url}/rooms/{room}?token={server.token(room, name='Ada')}")
    assert good.status_code == 200 and "Ada" in good.text and "candidate" in good.text
    expired_or_bad = httpx.get(f"{server.url}/rooms/{room}?token=abc.def")
    assert expired_or_bad.status_code == 401
    assert "invalid token" in expired_or_bad.text
    other = server.create_room()
    wrong_room = httpx.get(f"{server.url}/rooms/{other}?token={server.token(room)}")
    assert wrong_room.status_code == 403 and "another room" in wrong_room.text
    landing = httpx.get(server.url + "/")
    assert landing.status_code == 200 and "/api/rooms" in landing.text
