"""Timeline and replay: a scripted session read back through the reviewer API, exactly."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import ADMIN_KEY, ServerProcess, eventually
from control import ControlClient
from test_kernels import finished, records
from yclient import YClient

PASTED = "    return sum(range(10))  # found it online\n"


def now_ms() -> int:
    return int(time.time() * 1000)


def review(server: ServerProcess, room: str, what: str, token: str | None = None,
           **params: Any) -> httpx.Response:  # fmt: skip
    if token is not None:
        params["token"] = token
    return httpx.get(f"{server.url}/api/rooms/{room}/{what}", params=params, timeout=30)


async def moment() -> int:
    """A time after everything so far and before anything next (server and test share a
    clock; updates are stamped when accepted)."""
    await asyncio.sleep(0.03)
    at = now_ms()
    await asyncio.sleep(0.03)
    return at


@pytest.fixture(params=["sqlite", "postgres"])
def kernel_server(request: pytest.FixtureRequest, make_server: Callable[..., ServerProcess]) -> Any:
    return make_server(request.param, kernel_pool_size="1", run_timeout_seconds="10")


async def test_a_scripted_session_reads_back_exactly(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": "x = 1\n"})
    created = await moment()
    ivy_token, ivy_id = server.participant(room, "interviewer", "Ivy")
    cal_token, cal_id = server.participant(room, "candidate", "Cal")
    ivy_doc = await YClient(server.ws_url(room, ivy_token)).connect()
    cal_doc = await YClient(server.ws_url(room, cal_token)).connect()
    ivy = await ControlClient(server.url, ivy_token).connect()
    cal = await ControlClient(server.url, cal_token).connect()
    assert (await ivy.call("round", {"action": "start"}))["ok"]
    held: list[tuple[int, str]] = []  # (time, the text both clients held then)

    async def settle() -> None:
        await eventually(lambda: ivy_doc.text == cal_doc.text)
        held.append((await moment(), cal_doc.text))

    for char in "def f():\n":
        await cal_doc.type(char)
    await settle()
    await ivy_doc.type("# reviewed\n", at=0)
    await settle()
    await cal_doc.type(PASTED)
    digest = hashlib.sha256(PASTED.encode()).hexdigest()
    paste = {"type": "paste", "length": len(PASTED), "hash": digest, "file": "main.py",
             "offset": len(cal_doc.text) - len(PASTED)}  # fmt: skip
    assert (await cal.call("signal", paste))["ok"]
    await settle()
    assert (await cal.call("run", {"file": "main.py"}))["ok"]
    await eventually(lambda: finished(ivy_doc, 1), timeout=60)
    ran_at = await moment()
    ran = records(ivy_doc)
    assert (await ivy.call("chat", {"text": "thanks, that is all"}))["ok"]
    assert (await ivy.call("round", {"action": "end"}))["ok"]
    ended = await moment()

    reviewer = server.token(room, "reviewer", "Rae")
    for at, text in held:
        state = review(server, room, "state", reviewer, at=at).json()
        assert state["files"] == {"main.py": text}
    # Before the room existed: its seed. After the run: the outputs everyone saw.
    assert review(server, room, "state", reviewer, at=0).json()["files"] == {"main.py": "x = 1\n"}
    state = review(server, room, "state", reviewer, at=ran_at).json()
    assert [(r["status"], r["author"], r["file"]) for r in state["outputs"]] == [
        (r["status"], r["author"], r["file"]) for r in ran
    ]
    assert state["outputs"][0]["outputs"] == ran[0]["outputs"]

    diff = review(server, room, "diff", reviewer, **{"from": held[1][0], "to": ended}).json()
    lines = diff["files"]["main.py"].splitlines()
    added = [line for line in lines if line.startswith("+") and not line.startswith("+++")]
    assert added == ["+" + PASTED.rstrip("\n")]

    # Provenance: every character of the final code, to its author and how it arrived.
    final = held[-1][1]
    runs = review(server, room, "provenance", reviewer, at=ended).json()["files"]["main.py"]
    assert sum(r["length"] for r in runs) == len(final)
    pieces = [(final[r["start"] : r["start"] + r["length"]], r["name"], r["origin"]) for r in runs]
    assert pieces == [
        ("# reviewed\n", "Ivy", "typed"),
        ("x = 1\n", "system", "seed"),
        ("def f():\n", "Cal", "typed"),
        (PASTED, "Cal", "paste"),
    ]
    assert all(r["first_at"] >= created - 1000 for r in runs if r["origin"] != "seed")

    # The timeline: every update and event in time order, the same whether paged or not.
    whole = review(server, room, "timeline", reviewer).json()
    assert whole["next"] is None
    items = whole["items"]
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    types = [i["type"] for i in items if i["type"] != "update"]
    for expected in ("join", "round.live", "signal.paste", "run", "chat", "round.ended"):
        assert expected in types
    authors = {i["author"] for i in items if i["type"] == "update" and i["kind"] == "update"}
    assert {ivy_id, cal_id} <= authors
    assert whole["participants"][cal_id] == {"name": "Cal", "role": "candidate"}
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = review(server, room, "timeline", reviewer, **params).json()
        paged += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert paged == items
    window = review(server, room, "timeline", reviewer, **{"from": held[0][0], "to": held[1][0]})
    window_types = {i["type"] for i in window.json()["items"]}
    assert window_types == {"update"}  # only Ivy's comment went in between

    for client in (ivy, cal):
        await client.close()
    for doc in (ivy_doc, cal_doc):
        await doc.close()


async def test_only_reviewers_read_the_recording_and_bad_times_are_refused(
    server: ServerProcess,
) -> None:
    room = server.create_room()
    now = now_ms()
    for role, status in (("candidate", 403), ("interviewer", 403), ("observer", 403)):
        response = review(server, room, "state", server.token(room, role), at=now)
        assert response.status_code == status
        assert "only reviewers" in response.json()["detail"]
    other = server.create_room()
    assert review(server, room, "state", server.token(other, "reviewer"), at=now).status_code == 403
    assert review(server, room, "state", None, at=now).status_code == 401
    admin = httpx.get(f"{server.url}/api/rooms/{room}/state", params={"at": now},
                      headers={"authorization": f"Bearer {ADMIN_KEY}"})  # fmt: skip
    assert admin.status_code == 200

    reviewer = server.token(room, "reviewer")
    bad = {
        ("state", "at", "soon"): "'at' must be an integer time in milliseconds",
        ("state", "at", "-5"): "'at' is out of range",
        ("state", "at", "99999999999999999"): "'at' is out of range",
        ("timeline", "cursor", "not-a-cursor"): "unknown cursor",
        ("timeline", "limit", "0"): "'limit' must be an integer",
    }
    for (what, name, value), reason in bad.items():
        response = review(server, room, what, reviewer, **{name: value})
        assert response.status_code == 400 and reason in response.json()["detail"], response.text
    reversed_range = review(server, room, "diff", reviewer, **{"from": now, "to": now - 10})
    assert reversed_range.status_code == 400 and "'to' is before 'from'" in reversed_range.text
    assert review(server, room, "state", reviewer).json()["detail"].startswith("'at' is required")
    missing = review(server, "no-such-room", "state", server.token(room, "reviewer"), at=now)
    assert missing.status_code == 403  # the token is for another room: nothing is revealed


async def test_deleting_a_room_leaves_nothing_behind(server: ServerProcess) -> None:
    room = server.create_room(files={"main.py": "secret = 42\n"})
    keeper = server.create_room(files={"main.py": "kept\n"})
    token = server.token(room, "candidate")
    doc = await YClient(server.ws_url(room, token)).connect()
    notes = YClient(server.notes_url(room, server.token(room, "interviewer")), file="notes")
    await notes.connect()
    control = await ControlClient(server.url, token).connect()
    assert (await control.call("chat", {"text": "hello"}))["ok"]
    await doc.type("more = 1\n")
    await eventually(lambda: len(review(server, room, "timeline", server.token(room, "reviewer"))
                                 .json()["items"]) >= 3)  # fmt: skip

    assert server.api("DELETE", f"/api/rooms/{room}", key=None).status_code == 401
    assert server.api("DELETE", f"/api/rooms/{room}").status_code == 204
    assert (await doc.wait_closed())[0] == 4404
    assert (await notes.wait_closed())[0] == 4404
    await eventually(lambda: not control.sio.connected)
    for client in (doc, notes, control):  # closed by the server; release their sockets now
        await client.close()
    assert server.api("GET", f"/api/rooms/{room}").status_code == 404
    assert server.api("DELETE", f"/api/rooms/{room}").status_code == 404
    await asyncio.sleep(1.5)  # anything still in flight would have been written by now

    db = sqlite3.connect(server.data_dir / "clarityhire.db")
    try:
        keys = (room, f"{room}:notes")
        for table, column in (("rooms", "id"), ("updates", "room_id"),
                              ("snapshots", "room_id"), ("events", "room_id")):  # fmt: skip
            count = db.execute(
                f"SELECT count(*) FROM {table} WHERE {column} IN (?, ?)", keys
            ).fetchone()[0]
            assert count == 0, table
        assert db.execute("SELECT count(*) FROM rooms WHERE id = ?", (keeper,)).fetchone()[0] == 1
    finally:
        db.close()
    # Not even in the file's free pages or its write-ahead log.
    for path in server.data_dir.glob("clarityhire.db*"):
        assert b"secret = 42" not in path.read_bytes(), path.name
    assert not (server.data_dir / "recordings" / room).exists()
