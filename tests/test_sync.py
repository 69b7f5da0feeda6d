"""Several clients editing one room converge, and the log records every accepted update."""

from __future__ import annotations

import asyncio
import itertools
import random

from conftest import ServerProcess, eventually
from yclient import YClient

from rooms.types import EntryKind


async def test_three_clients_converge_and_log_each_update(any_server: ServerProcess) -> None:
    room = any_server.create_room(files={"main.py": ""})
    people = [
        any_server.participant(room, role, name)
        for role, name in [("interviewer", "Ivy"), ("candidate", "Cal"), ("candidate", "Cat")]
    ]
    clients = [await YClient(any_server.ws_url(room, token)).connect() for token, _ in people]
    rng = random.Random(7)
    typed = {pid: 0 for _, pid in people}

    async def typist(client: YClient, pid: str, letter: str) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while loop.time() < end:
            position = rng.randint(0, len(client.text))
            await client.type(letter, at=position)
            typed[pid] += 1
            await asyncio.sleep(rng.uniform(0.002, 0.02))

    await asyncio.gather(
        *(
            typist(c, pid, "abc"[i])
            for i, (c, (_, pid)) in enumerate(zip(clients, people, strict=True))
        )
    )
    total = sum(typed.values())
    await eventually(lambda: all(len(c.text) == total for c in clients))
    texts = {c.text for c in clients}
    assert len(texts) == 1
    final = texts.pop()
    for i, (_, pid) in enumerate(people):
        assert final.count("abc"[i]) == typed[pid]

    # The server's copy: a fresh observer syncs from it alone.
    observer = await YClient(any_server.ws_url(room, any_server.token(room, "observer"))).connect()
    assert observer.text == final

    for c in [*clients, observer]:
        await c.close()
    await asyncio.sleep(0.2)  # past the group-commit window
    log = await any_server.history(room)
    edits = [e for e in log if e.kind == EntryKind.UPDATE]
    assert len(edits) == total
    by_author = {pid: sum(1 for e in edits if e.author == pid) for _, pid in people}
    assert by_author == typed
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert all(a.at_us <= b.at_us for a, b in itertools.pairwise(log))


async def test_awareness_is_relayed_and_removed_when_a_connection_drops(
    server: ServerProcess,
) -> None:
    room = server.create_room()
    a = await YClient(server.ws_url(room, server.token(room, "interviewer"))).connect()
    b = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    await a.send_awareness({"user": {"name": "Ivy"}, "cursor": 3})
    await eventually(lambda: a.doc.client_id in b.awareness)
    # A late joiner receives the current states at once.
    c = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    await eventually(lambda: a.doc.client_id in c.awareness)
    await a.close()
    await eventually(lambda: a.doc.client_id not in b.awareness)
    await eventually(lambda: a.doc.client_id not in c.awareness)
    await b.close()
    await c.close()
