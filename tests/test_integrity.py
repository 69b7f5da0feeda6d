"""Integrity reports on labelled synthetic sessions, through the reviewer API of a real server."""

from __future__ import annotations

import httpx
import pytest
from conftest import ServerProcess
from sessions import KINDS, session

from rooms.store import SqlStore


async def saved(server: ServerProcess, kinds: list[str]) -> list[str]:
    store: SqlStore = server.store()
    await store.start()
    try:
        return [await session(kind, seed_value=i).save(store) for i, kind in enumerate(kinds)]
    finally:
        await store.close()


def report(server: ServerProcess, room: str, role: str = "reviewer") -> httpx.Response:
    token = server.token(room, role, "Rae")
    url = f"{server.url}/api/rooms/{room}/integrity"
    return httpx.get(url, params={"token": token}, timeout=60)


@pytest.mark.parametrize("kind", KINDS)
async def test_each_signal_fires_on_its_session_at_the_right_moments(
    server: ServerProcess, kind: str
) -> None:
    built = session(kind)
    store = server.store()
    await store.start()
    room = await built.save(store)
    await store.close()
    body = report(server, room).json()
    fired = {s["signal"]: s for s in body["signals"]}
    assert set(fired) == built.labels, body["signals"]
    for signal, marks in built.marks.items():
        for mark in marks:
            assert any(abs(t - mark) <= 1000 for t in fired[signal]["times"]), (signal, mark)
    if kind == "human":
        assert body["score"] == 0
    else:
        assert body["score"] > 0
        assert all(s["detail"] and s["contribution"] > 0 for s in body["signals"])
    assert "not proof" in body["limits"]


async def test_similarity_finds_a_renamed_copy_and_ignores_the_starter_code(
    server: ServerProcess,
) -> None:
    original, copy, different = await saved(server, ["human", "renamed_copy", "other_solution"])
    matches = report(server, copy).json()["similarity"]
    assert [m["room"] for m in matches] == [original]
    assert matches[0]["share"] >= 0.6
    region = matches[0]["regions"][0]
    assert region["file"] == region["other_file"] == "solution.py"
    assert region["end"] - region["start"] > 100
    # Everyone shares the starter code; a different solution matches nobody.
    assert report(server, different).json()["similarity"] == []


async def test_reviewers_see_the_report_candidates_do_not_and_flags_can_be_dismissed(
    server: ServerProcess,
) -> None:
    (room,) = await saved(server, ["paste"])
    for role in ("candidate", "interviewer", "observer"):
        refused = report(server, room, role)
        assert refused.status_code == 403 and "only reviewers" in refused.json()["detail"]
    before = report(server, room).json()
    flag = before["signals"][0]
    assert before["score"] > 0 and flag["dismissed"] is None

    url = f"{server.url}/api/rooms/{room}/integrity/dismissals"
    reviewer = {"token": server.token(room, "reviewer", "Rae")}
    bad = httpx.post(url, params=reviewer, json={"signal": "made_up", "at": 1, "note": "x"})
    assert bad.status_code == 400 and "a dismissal is" in bad.json()["detail"]
    candidate = {"token": server.token(room, "candidate")}
    body = {"signal": flag["signal"], "at": flag["times"][0], "note": "pasted from their notes"}
    assert httpx.post(url, params=candidate, json=body).status_code == 403
    assert httpx.post(url, params=reviewer, json=body).status_code == 201

    after = report(server, room).json()
    dismissed = after["signals"][0]["dismissed"]
    assert dismissed["note"] == "pasted from their notes" and dismissed["by"] != "admin"
    assert after["score"] == before["score"] - round(flag["contribution"])
