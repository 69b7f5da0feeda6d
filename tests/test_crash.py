"""SIGKILL while three clients type: after a restart nothing typed is lost, anywhere."""

from __future__ import annotations

import asyncio

import pytest
from conftest import BACKENDS, ServerProcess, eventually
from yclient import YClient

from rooms.document import files_of, load_doc


async def keep_connected(client: YClient, stop: asyncio.Event) -> None:
    """Reconnect whenever the connection drops, as a browser provider does."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await client.closed.wait()
        if stop.is_set():
            return
        await client.reconnect_until(loop.time() + 30)


async def type_steadily(
    client: YClient, letter: str, count: list[int], stop: asyncio.Event, pause: float = 0.005
) -> None:
    """Type one character every ``pause`` seconds, online or not, counting them."""
    while not stop.is_set():
        await client.type(letter)
        count[0] += 1
        await asyncio.sleep(pause)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigkill_loses_nothing(make_server, backend: str) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = make_server(backend)
    room = server.create_room(files={"main.py": ""})
    clients = [
        await YClient(server.ws_url(room, server.token(room, "candidate", f"c{i}"))).connect()
        for i in range(3)
    ]
    stop = asyncio.Event()
    counts = [[0] for _ in clients]
    tasks = [asyncio.create_task(keep_connected(c, stop)) for c in clients]
    tasks += [
        asyncio.create_task(type_steadily(c, "xyz"[i], counts[i], stop))
        for i, c in enumerate(clients)
    ]

    await asyncio.sleep(1.5)
    server.kill()
    typed_at_kill = [n[0] for n in counts]
    await asyncio.sleep(0.5)  # clients notice and keep typing offline
    await asyncio.to_thread(server.start)
    await eventually(lambda: all(c.connected and c.synced.is_set() for c in clients), timeout=30)
    await asyncio.sleep(1.0)  # and keep typing online again
    stop.set()
    await asyncio.gather(*tasks[3:])
    for c in clients:
        await c.flush()
    for task in tasks[:3]:
        task.cancel()

    assert all(n[0] > typed_at_kill[i] for i, n in enumerate(counts)), "typing went on"
    total = sum(n[0] for n in counts)
    await eventually(lambda: all(len(c.text) == total for c in clients), timeout=15)
    final = clients[0].text
    assert all(c.text == final for c in clients)
    for i, n in enumerate(counts):
        assert final.count("xyz"[i]) == n[0]

    fresh = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    assert fresh.text == final
    for c in [*clients, fresh]:
        await c.close()

    await asyncio.sleep(0.2)
    log = await server.history(room)
    assert files_of(load_doc([e.update for e in log]))["main.py"] == final
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
