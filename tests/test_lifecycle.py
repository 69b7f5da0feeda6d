"""Rooms leave memory when idle and come back identical; rooms seeded from other rooms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import ServerProcess, eventually
from pycrdt import Map
from yclient import YClient

from rooms.document import files_of, load_doc
from rooms.types import EntryKind


async def test_idle_room_is_evicted_and_reloads_identical(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(room_idle_seconds="0.5", snapshot_every_updates="10")
    room = server.create_room(files={"main.py": "start\n"})
    writer = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    for ch in "the quick brown fox jumps":
        await writer.type(ch)
    await eventually(lambda: server.api("GET", f"/api/rooms/{room}").json()["live"])
    before = writer.text
    await writer.close()

    await eventually(lambda: not server.api("GET", f"/api/rooms/{room}").json()["live"], timeout=5)
    store = server.store()
    await store.start()
    history = await store.load(room)
    await store.close()
    assert history.snapshot is not None and history.snapshot.seq == history.last_seq

    again = await YClient(server.ws_url(room, server.token(room, "interviewer"))).connect()
    assert again.text == before
    await again.type(" over")
    await again.close()
    await asyncio.sleep(0.2)
    log = await server.history(room)
    assert files_of(load_doc([e.update for e in log]))["main.py"] == before + " over"
    assert [e.seq for e in log] == list(range(1, len(log) + 1))


async def test_room_seeded_from_another_starts_with_its_files_and_history(
    server: ServerProcess,
) -> None:
    take_home = server.create_room(kind="solo", files={"main.py": "", "README.md": "# task\n"})
    token, candidate_id = server.participant(take_home, "candidate", "Cal")
    candidate = await YClient(server.ws_url(take_home, token)).connect()
    for ch in "def solve(): return 42\n":
        await candidate.type(ch)
    submitted = {name: str(text) for name, text in candidate.files.items()}
    await candidate.close()
    await asyncio.sleep(0.1)

    response = server.api("POST", "/api/rooms", {"kind": "live", "seed_from": take_home})
    assert response.status_code == 201
    live = response.json()
    assert live["seeded_from"] == take_home

    source_log = await server.history(take_home)
    live_log = await server.history(live["id"])
    copied = live_log[: len(source_log)]
    assert [(e.seq, e.at_us, e.author, e.update) for e in copied] == [
        (e.seq, e.at_us, e.author, e.update) for e in source_log
    ]
    assert sum(1 for e in copied if e.author == candidate_id) == len("def solve(): return 42\n")
    marker = live_log[len(source_log)]
    assert marker.kind == EntryKind.SEED

    interviewer = YClient(server.ws_url(live["id"], server.token(live["id"], "interviewer")))
    await interviewer.connect()
    assert {n: str(t) for n, t in interviewer.files.items()} == submitted
    meta = interviewer.doc.get("meta", type=Map)
    assert meta["seeded_from"] == take_home
    assert meta["seeded_seq"] == len(source_log)
    assert meta["kind"] == "live"
    # The seeded room is a room like any other: edits go on from the submission.
    await interviewer.type("# walk me through line 1\n", at=0)
    await interviewer.close()
    await asyncio.sleep(0.1)
    # ...and the take-home itself is untouched.
    assert files_of(load_doc([e.update for e in await server.history(take_home)])) == submitted


async def test_seeding_errors_are_clear(server: ServerProcess) -> None:
    response = server.api("POST", "/api/rooms", {"kind": "live", "seed_from": "nope"})
    assert response.status_code == 400
    assert "no room 'nope'" in response.json()["detail"]
    room = server.create_room()
    both = server.api("POST", "/api/rooms", {"seed_from": room, "files": {"a.py": ""}})
    assert both.status_code == 400
    assert "not both" in both.json()["detail"]
