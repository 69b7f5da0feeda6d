"""Cluster mode: three server processes on the shared PostgreSQL and Redis of this machine.

A room's clients spread over the nodes converge and see each other; a node killed with SIGKILL
loses nothing its clients typed, and the log holds every update once; Redis stopped and
restarted under a session loses nothing either.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, eventually, free_port
from control import ControlClient
from pycrdt import Array, Doc
from rtcclient import CallClient
from test_crash import type_steadily
from yclient import YClient

from rooms.document import files_of, initial_update, load_doc
from rooms.protocol import SyncType, encode_sync
from rooms.room import Room, SnapshotPolicy
from rooms.types import EntryKind, LogEntry, Participant, Role, RoomInfo, RoomKind
from rooms.update_log import UpdateLog

pytestmark = pytest.mark.cluster


class RedisProcess:
    """A redis-server of the test's own, on a free port, that the test can stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                  capture_output=True, text=True)  # fmt: skip
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


class Nodes:
    """Server processes sharing one PostgreSQL schema and one Redis prefix."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.schema = f"t_{secrets.token_hex(6)}"
        self.secret = secrets.token_hex(16)
        self.prefix = f"t{secrets.token_hex(4)}"
        self.nodes: list[ServerProcess] = []

    def start(self, count: int, **env: str) -> list[ServerProcess]:
        for _ in range(count):
            i = len(self.nodes)
            data = self.tmp_path / f"node{i}"
            data.mkdir()
            node = ServerProcess(
                data, "postgres",
                {"CLARITYHIRE_REDIS_URL": self.redis_url, "CLARITYHIRE_REDIS_PREFIX": self.prefix,
                 "CLARITYHIRE_NODE_ID": f"n{i}", "CLARITYHIRE_SECRET_KEY": self.secret,
                 "CLARITYHIRE_CLUSTER_COMMIT_WINDOW_MS": "2",
                 **{"CLARITYHIRE_" + k.upper(): v for k, v in env.items()}},
                schema=self.schema,
            )  # fmt: skip
            node.start()
            self.nodes.append(node)
        return self.nodes

    async def close(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.nodes:
            await self.nodes[0].drop_schema()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Nodes]]:
    made: list[Nodes] = []

    def make(redis_url: str = "redis://127.0.0.1:6379/0") -> Nodes:
        made.append(Nodes(tmp_path, redis_url))
        return made[-1]

    yield make
    for nodes in made:
        await nodes.close()


async def keep_connected(client: YClient, nodes: list[ServerProcess], room: str, token: str,
                         stop: asyncio.Event) -> None:  # fmt: skip
    """Reconnect whenever the connection drops, to the next node that answers (what a load
    balancer does when a node goes away)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await client.closed.wait()
        if stop.is_set():
            return
        alive = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
        current = next((n for n in alive if f":{n.port}/" in client.url), None)
        target = current or alive[(nodes.index(alive[0]) + 1) % len(alive)]
        client.url = target.ws_url(room, token)
        await client.reconnect_until(loop.time() + 30)


def assert_logged_once(history: list[LogEntry]) -> None:
    """Sequence numbers 1..N, and no update that adds nothing to the ones before it (an
    update accepted twice, by two nodes, would)."""
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    doc = Doc()
    for entry in history:
        before = doc.get_state()
        doc.apply_update(entry.update)
        assert doc.get_state() != before or entry.kind.value == "seed", (entry.seq, entry.kind)


async def test_clients_on_three_nodes_converge_and_see_each_other(
    cluster: Callable[..., Nodes],
) -> None:
    nodes = cluster().start(3)
    room = nodes[0].create_room(files={"main.py": ""})
    tokens = [nodes[0].token(room, "candidate" if i == 0 else "interviewer", f"P{i}")
              for i in range(3)]  # fmt: skip
    clients = [await YClient(nodes[i % 3].ws_url(room, tokens[i % 3])).connect() for i in range(6)]
    for round_ in range(20):
        for i, client in enumerate(clients):
            await client.type("abcdef"[i])
        await asyncio.sleep(0.005 * round_ % 3)
    for client in clients:
        await client.flush()
    await eventually(lambda: len({c.text for c in clients}) == 1 and len(clients[0].text) == 120,
                     timeout=15)  # fmt: skip
    assert sorted(clients[0].text) == sorted("abcdef" * 20)

    # Awareness (cursors) set on one node reaches the clients of the others.
    await clients[0].send_awareness({"user": {"name": "P0"}, "cursor": 3})
    await eventually(lambda: any(b"P0" in s for s in clients[2].awareness.values()))

    # Presence and chat, whichever node each person is on.
    controls = [await ControlClient(nodes[i].url, tokens[i]).connect() for i in range(3)]

    def names(c: ControlClient) -> set[str]:
        return {p["name"] for p in c.presence()} if c.events["presence"] else set()

    await eventually(lambda: all(names(c) == {"P0", "P1", "P2"} for c in controls), timeout=15)
    assert (await controls[1].call("chat", {"text": "hello from n1"}))["ok"]
    for control in controls:
        await control.wait_for("chat")
        assert control.events["chat"][-1]["text"] == "hello from n1"
    await controls[2].close()
    await eventually(lambda: names(controls[0]) == {"P0", "P1"}, timeout=20)
    for control in controls[:2]:
        await control.close()

    history = await nodes[0].history(room)
    assert_logged_once(history)
    final = files_of(load_doc([e.update for e in history]))["main.py"]
    assert sorted(final) == sorted(clients[0].text)
    for client in clients:
        await client.close()


async def test_a_node_killed_while_its_clients_type_loses_nothing(
    cluster: Callable[..., Nodes],
) -> None:
    nodes = cluster().start(3)
    room = nodes[0].create_room(files={"main.py": ""})
    tokens = [nodes[0].token(room, "interviewer", f"T{i}") for i in range(6)]
    clients = [await YClient(nodes[i % 3].ws_url(room, tokens[i])).connect() for i in range(6)]
    stop = asyncio.Event()
    counts = [[0] for _ in clients]
    tasks = [asyncio.create_task(keep_connected(c, nodes, room, tokens[i], stop))
             for i, c in enumerate(clients)]  # fmt: skip
    typing = [asyncio.create_task(type_steadily(c, "uvwxyz"[i], counts[i], stop, 0.01))
              for i, c in enumerate(clients)]  # fmt: skip
    await asyncio.sleep(1.5)
    nodes[1].kill()
    await asyncio.sleep(2.0)  # its clients move to the others and keep typing
    stop.set()
    await asyncio.gather(*typing)
    await eventually(lambda: all(c.connected and c.synced.is_set() for c in clients), timeout=30)
    for c in clients:
        await c.flush()
    await eventually(lambda: len({c.text for c in clients}) == 1, timeout=20)
    text = clients[0].text
    for i, letter in enumerate("uvwxyz"):
        assert text.count(letter) == counts[i][0], (letter, text.count(letter), counts[i][0])
    for task in tasks:
        task.cancel()

    await asyncio.sleep(0.5)
    history = await nodes[0].history(room)
    assert_logged_once(history)
    assert files_of(load_doc([e.update for e in history]))["main.py"] == text
    for client in clients:
        await client.close()


async def test_redis_stopped_and_restarted_loses_nothing(
    cluster: Callable[..., Nodes],
) -> None:
    redis = RedisProcess()
    redis.start()
    try:
        await _redis_outage(cluster(redis.url), redis)
    finally:
        if redis.proc is not None and redis.proc.poll() is None:
            redis.kill()


async def _redis_outage(group: Nodes, redis: RedisProcess) -> None:
    nodes = group.start(2)
    room = nodes[0].create_room(files={"main.py": ""})
    tokens = [nodes[0].token(room, "interviewer", f"R{i}") for i in range(2)]
    clients = [await YClient(nodes[i].ws_url(room, tokens[i])).connect() for i in range(2)]
    for client, letter in zip(clients, "ab", strict=True):
        await client.type(letter * 5)
        await client.flush()
    await eventually(lambda: len({c.text for c in clients}) == 1 and len(clients[0].text) == 10)

    redis.kill()

    await eventually(lambda: all(health(n).get("redis") == "unreachable" for n in nodes))
    assert httpx.get(nodes[0].url + "/healthz").status_code == 503
    # A newcomer is refused with the reason; those connected keep editing on their node.
    newcomer = await YClient(nodes[1].ws_url(room, tokens[1])).connect()
    code, reason = await newcomer.wait_closed()
    assert code == 4503 and reason is not None and "Redis" in reason
    for client, letter in zip(clients, "cd", strict=True):
        await client.type(letter * 5)
        await client.flush()

    redis.start()
    await eventually(lambda: all(health(n).get("redis") == "ok" for n in nodes), timeout=20)
    await eventually(lambda: len({c.text for c in clients}) == 1 and len(clients[0].text) == 20,
                     timeout=20)  # fmt: skip
    history = await nodes[0].history(room)
    assert_logged_once(history)
    assert files_of(load_doc([e.update for e in history]))["main.py"] == clients[0].text
    for client in clients:
        await client.close()


def health(node: ServerProcess) -> dict[str, Any]:
    return httpx.get(node.url + "/healthz", timeout=5).json()  # type: ignore[no-any-return]


def run_records(client: YClient) -> list[dict[str, Any]]:
    return [
        {**dict(record), "outputs": [dict(o) for o in record["outputs"]]}
        for record in client.doc.get("outputs", type=Array)
    ]


def finished(client: YClient, count: int) -> bool:
    runs = run_records(client)
    return len(runs) >= count and all(r["status"] != "running" for r in runs[:count])


async def first_page(node: ServerProcess, room: str, token: str) -> YClient:
    """A page on ``node``, the first to load the room: that node takes the room's lease."""
    page = await YClient(node.ws_url(room, token)).connect()
    await eventually(lambda: health(node)["rooms_owned"] == 1)
    return page


async def test_code_runs_on_the_rooms_owner_and_on_the_next_one_when_it_dies(
    cluster: Callable[..., Nodes],
) -> None:
    nodes = cluster().start(2, run_timeout_seconds="20")
    room = nodes[0].create_room(files={"main.py": "print('first')\n"})
    cal_token = nodes[0].token(room, "candidate", "Cal")
    ivy_token = nodes[0].token(room, "interviewer", "Ivy")
    # Cal arrives on n0, which takes the room's lease; Ivy is on n1.
    cal = await first_page(nodes[0], room, cal_token)
    ivy = await YClient(nodes[1].ws_url(room, ivy_token)).connect()
    ivy_control = await ControlClient(nodes[1].url, ivy_token).connect()

    # Cal's newest line, typed on n0, is in the run Ivy starts on n1: n0 runs it.
    await cal.type("print('typed on n0')\n")
    assert await ivy_control.call("run", {"file": "main.py"}) == {"ok": True}
    await eventually(lambda: finished(ivy, 1), timeout=60)
    [first] = run_records(ivy)
    assert first["status"] == "ok", first
    assert "".join(o.get("text", "") for o in first["outputs"]) == "first\ntyped on n0\n"
    assert health(nodes[1])["rooms_owned"] == 0

    nodes[0].kill()
    # The next run from n1 waits out the dead node's heartbeat, takes the room over and runs
    # in a fresh kernel there; the room is told.
    answer = await ivy_control.call("run", {"file": "main.py", "code": "print(6 * 7)"})
    assert answer == {"ok": True}, answer
    await eventually(lambda: finished(ivy, 2), timeout=60)
    second = run_records(ivy)[1]
    assert second["status"] == "ok" and second["outputs"][0]["text"] == "42\n", second
    assert health(nodes[1])["rooms_owned"] == 1
    await ivy_control.wait_for("notice")
    assert "fresh kernel" in ivy_control.events["notice"][-1]["text"]
    moved = await nodes[1].events(room, ("kernel.moved",))
    assert [e.data["from"] for e in moved] == ["n0"]
    await ivy_control.close()
    await ivy.close()
    await cal.close()


async def test_the_owner_keeps_the_kernel_when_its_own_last_page_leaves(
    cluster: Callable[..., Nodes],
) -> None:
    # Rooms unused for a second leave memory; a lease lapses 10 s after its last renewal.
    nodes = cluster().start(2, room_idle_seconds="1", run_timeout_seconds="20")
    room = nodes[0].create_room(files={"main.py": ""})
    ivy_token = nodes[0].token(room, "interviewer", "Ivy")
    cal_token = nodes[0].token(room, "candidate", "Cal")
    ivy = await first_page(nodes[0], room, ivy_token)
    cal = await YClient(nodes[1].ws_url(room, cal_token)).connect()
    cal_control = await ControlClient(nodes[1].url, cal_token).connect()
    assert await cal_control.call("run", {"file": "main.py", "code": "x = 41"}) == {"ok": True}
    await eventually(lambda: finished(cal, 1), timeout=60)

    # Ivy closes her tab: n0 has no page of the room left, but its kernel still serves Cal.
    await ivy.close()
    await asyncio.sleep(12)
    assert await cal_control.call("run", {"file": "main.py", "code": "print(x + 1)"}) == {
        "ok": True
    }
    await eventually(lambda: finished(cal, 2), timeout=60)
    second = run_records(cal)[1]
    assert second["status"] == "ok" and second["outputs"][0]["text"] == "42\n", second
    assert health(nodes[0])["rooms_owned"] == 1
    assert await nodes[1].events(room, ("kernel.moved",)) == []
    await cal_control.close()
    await cal.close()


async def hang_up(calls: list[CallClient], docs: list[YClient]) -> None:
    """Close every peer, socket and document client, also those whose node was killed."""
    for call in calls:
        await call.control.close()  # no more signalling, so no new peer after this
    await asyncio.sleep(0.5)  # the signalling being handled finishes
    for call in calls:
        await call.close()
    for doc in docs:
        await doc.close()
    await asyncio.sleep(0.5)  # aiortc closes its ICE transports on the next turns of the loop


def media_of(client: ControlClient, participant_id: str) -> Any:
    people = {p["id"]: p["media"] for p in client.presence()} if client.events["presence"] else {}
    return people.get(participant_id, "absent")


async def test_a_call_across_nodes_is_held_by_the_rooms_owner(
    cluster: Callable[..., Nodes],
) -> None:
    nodes = cluster().start(2, media_ice_addresses="127.0.0.1")
    room = nodes[0].create_room()
    ivy_token, ivy_id = nodes[0].participant(room, "interviewer", "Ivy")
    cal_token, cal_id = nodes[0].participant(room, "candidate", "Cal")
    # Their pages: Ivy's on n0, which takes the room's lease, Cal's on n1.
    ivy_doc = await first_page(nodes[0], room, ivy_token)
    cal_doc = await YClient(nodes[1].ws_url(room, cal_token)).connect()
    ivy = CallClient(await ControlClient(nodes[0].url, ivy_token).connect())
    cal = CallClient(await ControlClient(nodes[1].url, cal_token).connect())
    try:
        await ivy.join()
        answer = await cal.join()
        # Cal joined through n1, and n0 told him Ivy is in the call: they connect directly.
        assert [p["id"] for p in answer["peers"]] == [ivy_id]
        for receiver, sender in ((ivy, cal_id), (cal, ivy_id)):
            await eventually(
                lambda r=receiver, s=sender: (
                    r.frames_from(s, "video") >= 15 and r.frames_from(s, "audio") >= 15
                ),
                timeout=20,
            )
        # Both nodes show both people in the call, and a muted camera, in presence.
        assert (await cal.control.call("media_state", {"audio": True, "video": False}))["ok"]
        await eventually(lambda: media_of(ivy.control, cal_id) == {"audio": True, "video": False})
        await eventually(lambda: media_of(cal.control, ivy_id) == {"audio": True, "video": True})

        # The owner dies: Cal is told the call is over and joins again on n1, its new owner.
        nodes[0].kill()
        ended = await cal.control.wait_for("media_ended", timeout=20)
        assert "join again" in ended[-1]["reason"]
        await eventually(lambda: media_of(cal.control, cal_id) is None)
        await cal.close()
        again = await cal.control.call("media_join", {"audio": True, "video": True})
        assert again["ok"] and again["peers"] == [], again
        assert health(nodes[1])["rooms_owned"] == 1
    finally:
        await hang_up([ivy, cal], [cal_doc, ivy_doc])


async def test_call_members_on_a_node_that_dies_leave_the_call(
    cluster: Callable[..., Nodes],
) -> None:
    nodes = cluster().start(2, media_ice_addresses="127.0.0.1")
    room = nodes[0].create_room()
    ivy_token, ivy_id = nodes[0].participant(room, "interviewer", "Ivy")
    cal_token, cal_id = nodes[0].participant(room, "candidate", "Cal")
    ian_token, _ = nodes[0].participant(room, "interviewer", "Ian")
    ivy_doc = await first_page(nodes[0], room, ivy_token)
    ivy = CallClient(await ControlClient(nodes[0].url, ivy_token).connect())
    cal = CallClient(await ControlClient(nodes[1].url, cal_token).connect())
    ian = CallClient(await ControlClient(nodes[0].url, ian_token).connect())
    try:
        await ivy.join()
        await cal.join()
        await eventually(lambda: cal_id in ivy.peers)
        # Cal's node dies: no leave can come from it, yet he leaves the call on the owner.
        nodes[1].kill()
        await eventually(lambda: cal_id not in ivy.peers, timeout=15)
        answer = await ian.join()
        assert [p["id"] for p in answer["peers"]] == [ivy_id]
    finally:
        await hang_up([ivy, ian, cal], [ivy_doc])


class ListeningPeer:
    """A connection of the room below, keeping what it is sent."""

    def __init__(self, name: str) -> None:
        self.participant = Participant(f"p_{name}", name, Role.INTERVIEWER)
        self.awareness_ids: set[int] = set()
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        pass


def typed(doc: Doc, text: str) -> bytes:
    """The update of typing ``text`` at the end of main.py."""
    before = doc.get_state()
    main = doc["files"]["main.py"]
    main.insert(len(str(main)), text)
    return doc.get_update(before)


async def test_another_nodes_entry_waiting_behind_ours_is_applied_when_ours_is_numbered() -> None:
    # One room, held by this node and another. Ours is committed as entry 2, but the other
    # node's entry 3 is announced before this node hears that number: it waits, then must be
    # applied (a node that skipped it would never show anything the others typed after it).
    info = RoomInfo("r1", RoomKind.LIVE, "python", 1_000)
    seed = initial_update(info, {"main.py": ""})
    ours, theirs = load_doc([seed]), load_doc([seed])
    room = Room(info, "r1", load_doc([seed]), 1, 0, UpdateLog(None, 0.0), SnapshotPolicy(500, 60))  # type: ignore[arg-type]
    room.clustered = True
    ada, ben = ListeningPeer("Ada"), ListeningPeer("Ben")
    room.join(ada)
    room.join(ben)

    assert await room.apply_update(typed(ours, "a"), ada.participant, EntryKind.UPDATE, ada)
    their_update = typed(theirs, "b")
    await room.apply_remote([LogEntry("r1", 3, 2_000, "p_other", EntryKind.UPDATE, their_update)])
    assert files_of(room.doc)["main.py"] == "a" and room.seq == 1  # 3 waits for 2

    await room.own_numbered([2])
    assert room.seq == 3
    assert sorted(files_of(room.doc)["main.py"]) == ["a", "b"]
    assert encode_sync(SyncType.UPDATE, their_update) in ada.sent
