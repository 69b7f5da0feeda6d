#!/usr/bin/env python3
"""Cross-node delivery in cluster mode: what going through Redis and the shared log costs.

Nodes are real server processes (``tests/conftest.py``'s ``ServerProcess``) in cluster mode on
this machine's PostgreSQL (a schema of the run's own) and Redis (a key prefix of the run's
own). Each room has one typist and two observers, all pycrdt y-websocket clients
(``tests/yclient.py``) in this process. The typist inserts one character at the end of
``main.py`` ``--rate`` times a second; an observer timestamps the moment the update that
brings the text to each length is applied, and the latency of an update is that moment minus
the typist's send time (``time.perf_counter``, one clock).

* ``nodes=1``: typist and observers on the same node (the fan-out stays in process; the log is
  still numbered in PostgreSQL and every commit is published to Redis).
* ``nodes=2``: the typist on node 0 and both observers on node 1, so every delivery crosses:
  node 0 commits the update to PostgreSQL, publishes it on the room's Redis channel, and
  node 1 applies it and sends it to its clients.

For each room count of ``--rooms``: warm-up, a ``--seconds`` window, then a drain; rows give
``p50_ms``/``p99_ms`` over every (update, observer) pair sent in the window and what was not
delivered. ``capacity_rooms`` per node count is the largest room count whose p99 <= 100 ms
with everything delivered. The client process shares the 2 cores with the nodes: the
``client_cpu`` column says how busy it was (near 1.0 means the numbers are the client's).
Writes ``bench/results/cluster.json``. Run: ``.venv/bin/python bench/cluster.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import ServerProcess  # noqa: E402
from yclient import YClient  # noqa: E402

from server.settings import load_settings  # noqa: E402

RESULTS = REPO / "bench/results/cluster.json"
P99_TARGET_MS = 100.0


class Observer(YClient):
    """A client that notes when the text reaches each length (one typist per room)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.seen_at: dict[int, float] = {}
        self._length = 0

    def _apply(self, update: bytes) -> None:
        super()._apply(update)
        self.frames.clear()
        length = len(self.text)
        now = time.perf_counter()
        for n in range(self._length + 1, length + 1):
            self.seen_at[n] = now
        self._length = max(self._length, length)


@dataclass
class Row:
    nodes: int
    rooms: int
    clients_per_room: int
    rate: float
    sent: int
    undelivered: int
    p50_ms: float
    p99_ms: float
    client_cpu: float


def start_nodes(count: int, tmp: Path, args: argparse.Namespace) -> list[ServerProcess]:
    schema = f"bench_{secrets.token_hex(5)}"
    prefix = f"bench{secrets.token_hex(4)}"
    secret = secrets.token_hex(16)
    nodes = []
    for i in range(count):
        data = tmp / f"n{count}-{i}"
        data.mkdir()
        env = {
            "CLARITYHIRE_REDIS_URL": args.redis_url,
            "CLARITYHIRE_REDIS_PREFIX": prefix,
            "CLARITYHIRE_NODE_ID": f"n{i}",
            "CLARITYHIRE_SECRET_KEY": secret,
            "CLARITYHIRE_LOG_LEVEL": "error",
        }
        if args.commit_window_ms is not None:
            env["CLARITYHIRE_CLUSTER_COMMIT_WINDOW_MS"] = str(args.commit_window_ms)
        node = ServerProcess(data, "postgres", env, schema=schema)
        node.start()
        nodes.append(node)
    return nodes


async def measure(
    nodes: list[ServerProcess], rooms: int, rate: float, warmup: float, seconds: float
) -> Row:
    typist_node, observer_node = nodes[0], nodes[-1]
    room_ids = [typist_node.create_room(files={"main.py": ""}) for _ in range(rooms)]
    typists, observers = [], []
    for room in room_ids:
        token = typist_node.token(room, "interviewer", "Typist")
        typists.append(await YClient(typist_node.ws_url(room, token)).connect())
        for name in ("Obs1", "Obs2"):
            token = typist_node.token(room, "interviewer", name)
            observers.append(await Observer(observer_node.ws_url(room, token)).connect())
    sent_at: list[dict[int, float]] = [{} for _ in room_ids]
    stop = asyncio.Event()

    async def type_in(i: int) -> None:
        await asyncio.sleep(random.random() / rate)
        count = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            count += 1
            sent_at[i][count] = time.perf_counter()
            await typists[i].type("x")
            typists[i].frames.clear()
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    tasks = [asyncio.create_task(type_in(i)) for i in range(rooms)]
    await asyncio.sleep(warmup)
    window_start = time.perf_counter()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    window_end = time.perf_counter()
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(3.0)  # drain

    latencies: list[float] = []
    sent = undelivered = 0
    for i in range(rooms):
        for n, at in sent_at[i].items():
            if not window_start <= at < window_end:
                continue
            for observer in observers[2 * i : 2 * i + 2]:
                sent += 1
                seen = observer.seen_at.get(n)
                if seen is None:
                    undelivered += 1
                else:
                    latencies.append((seen - at) * 1000)
    for client in (*typists, *observers):
        await client.close()
    cpu = (cpu_end.ru_utime + cpu_end.ru_stime) - (cpu_start.ru_utime + cpu_start.ru_stime)
    latencies.sort()
    return Row(
        nodes=len(nodes),
        rooms=rooms,
        clients_per_room=3,
        rate=rate,
        sent=sent,
        undelivered=undelivered,
        p50_ms=round(statistics.median(latencies), 2) if latencies else float("nan"),
        p99_ms=round(latencies[int(len(latencies) * 0.99)], 2) if latencies else float("nan"),
        client_cpu=round(cpu / (window_end - window_start), 2),
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[Row] = []
    capacity: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.nodes:
            nodes = start_nodes(count, Path(tmp), args)
            try:
                capacity[str(count)] = 0
                for rooms in args.rooms:
                    row = await measure(nodes, rooms, args.rate, args.warmup, args.seconds)
                    rows.append(row)
                    print_row(row)
                    if row.undelivered or row.p99_ms > P99_TARGET_MS:
                        break
                    capacity[str(count)] = rooms
            finally:
                for node in nodes:
                    node.stop()
                await nodes[0].drop_schema()
    window = args.commit_window_ms
    if window is None:
        window = load_settings().cluster_commit_window_ms
    return {
        "capacity_rooms": capacity,
        "p99_target_ms": P99_TARGET_MS,
        "cluster_commit_window_ms": window,
        "rows": [asdict(r) for r in rows],
    }


def print_row(row: Row) -> None:
    print(
        f"{row.nodes:>5} {row.rooms:>6} {row.sent:>8} {row.undelivered:>6} "
        f"{row.p50_ms:>8.1f} {row.p99_ms:>8.1f} {row.client_cpu:>6.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", default="25,50,100,200,300,400", help="room counts, ascending")
    parser.add_argument("--rate", type=float, default=10.0, help="updates/s per typist")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nodes", default="1,2", help="node counts")
    parser.add_argument("--commit-window-ms", type=int, help="the nodes' cluster_commit_window_ms")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.rooms = [int(x) for x in args.rooms.split(",")]
    args.nodes = [int(x) for x in args.nodes.split(",")]
    print(f"{'nodes':>5} {'rooms':>6} {'sent':>8} {'lost':>6} {'p50_ms':>8} {'p99_ms':>8} "
          f"{'client':>6}")  # fmt: skip
    report = asyncio.run(run(args))
    print("capacity_rooms at p99 <= 100 ms:", report["capacity_rooms"])
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
