#!/usr/bin/env python3
"""Replay speed: the state of a 90-minute, 50,000-update session at any moment, and opening its
timeline, through the reviewer API of a real server.

The session is generated the way the server would have recorded it: two participants typing
(and deleting now and then) into two files, one update per keystroke, spread over 90 minutes
of server time, with a snapshot every 500 updates (the default ``snapshot_every_updates``),
written to the server's SQLite store before it starts. Then, against the running server:

* ``state_at``: ``GET /api/rooms/{id}/state?at=T`` for ``--samples`` random moments of the
  session (the files and outputs then), timed from request to parsed JSON;
* ``timeline_open``: ``GET /api/rooms/{id}/timeline`` (the first page, 5,000 items with their
  updates), timed the same way, a few times;
* ``bytes_per_session_hour``: the store's bytes for the session (update and snapshot rows),
  per hour of session.

It prints a table and writes ``bench/results/replay.json``:
``.venv/bin/python bench/replay.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
from conftest import ServerProcess  # noqa: E402
from pycrdt import Doc, Map, Text  # noqa: E402

from rooms.document import initial_update, new_doc  # noqa: E402
from rooms.store import SqlStore, sqlite_url  # noqa: E402
from rooms.types import EntryKind, LogEntry, RoomInfo, RoomKind, Snapshot  # noqa: E402

SESSION_S = 90 * 60
SNAPSHOT_EVERY = 500


def generate(
    room_id: str, updates: int, start_us: int
) -> tuple[RoomInfo, list[LogEntry], list[Snapshot]]:
    """A recorded session: the seed, then ``updates`` keystrokes of two typists."""
    info = RoomInfo(room_id, RoomKind.LIVE, "python", start_us, None, "bench", None)
    seed = initial_update(info, {"main.py": "# solution\n", "test_main.py": "# tests\n"})
    entries = [LogEntry(room_id, 1, start_us, "system", EntryKind.SEED, seed)]
    server_doc = new_doc()
    server_doc.apply_update(seed)
    typists = []
    for author in ("p_candidate", "p_interviewer"):
        doc: Doc = Doc()
        doc.apply_update(seed)
        typists.append((author, doc))
    rng = random.Random(7)
    snapshots = []
    step_us = SESSION_S * 1_000_000 // updates
    for seq in range(2, updates + 2):
        author, doc = typists[0] if rng.random() < 0.85 else typists[1]
        doc.apply_update(server_doc.get_update(doc.get_state()))
        files = doc.get("files", type=Map)
        text = files["main.py" if rng.random() < 0.8 else "test_main.py"]
        assert isinstance(text, Text)
        captured: list[bytes] = []
        subscription = doc.observe(lambda event, c=captured: c.append(event.update))
        if len(text) > 20 and rng.random() < 0.1:
            del text[len(text) - 1]
        else:
            text.insert(len(text), rng.choice("abcdefghijklmnopqrstuvwxyz     ()=:\n"))
        doc.unobserve(subscription)
        at_us = start_us + seq * step_us
        server_doc.apply_update(captured[0])
        entries.append(LogEntry(room_id, seq, at_us, author, EntryKind.UPDATE, captured[0]))
        if seq % SNAPSHOT_EVERY == 0:
            snapshots.append(Snapshot(room_id, seq, at_us, server_doc.get_update()))
    return info, entries, snapshots


async def write_session(
    db: Path, info: RoomInfo, entries: list[LogEntry], snaps: list[Snapshot]
) -> dict[str, int]:
    store = SqlStore(sqlite_url(db))
    await store.start()
    try:
        await store.create_room(info, entries[:1])
        for i in range(1, len(entries), 1000):
            chunk = entries[i : i + 1000]
            last = chunk[-1].seq
            await store.append(chunk, [s for s in snaps if chunk[0].seq <= s.seq <= last])
    finally:
        await store.close()
    # Row bytes: the blob plus the key and time columns.
    return {
        "updates": sum(len(e.update) + 40 for e in entries),
        "snapshots": sum(len(s.state) + 24 for s in snaps),
    }


def timed_get(client: httpx.Client, url: str, params: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    response = client.get(url, params=params)
    body = response.json()
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, body
    return elapsed, body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "replay.json")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="clarityhire-bench-replay-"))
    server = ServerProcess(data, "sqlite", {"CLARITYHIRE_KERNEL_POOL_SIZE": "0"})
    try:
        server.start()  # creates the schema
        server.stop()
        start_us = int((time.time() - SESSION_S - 60) * 1_000_000)
        generated = time.perf_counter()
        info, entries, snapshots = generate("benchreplay", args.updates, start_us)
        generated = time.perf_counter() - generated
        stored = asyncio.run(write_session(data / "clarityhire.db", info, entries, snapshots))
        server.start()
        reviewer = server.token(info.id, "reviewer", "Rae", ttl=3600)
        base = f"{server.url}/api/rooms/{info.id}"
        rng = random.Random(11)
        first_ms, last_ms = entries[0].at_us // 1000, entries[-1].at_us // 1000
        with httpx.Client(timeout=60) as client:
            timed_get(client, f"{base}/state", {"token": reviewer, "at": last_ms})  # warm-up
            state_ms = []
            for _ in range(args.samples):
                at = rng.randint(first_ms, last_ms)
                elapsed, _ = timed_get(client, f"{base}/state", {"token": reviewer, "at": at})
                state_ms.append(elapsed)
            open_ms = []
            for _ in range(5):
                elapsed, page = timed_get(client, f"{base}/timeline", {"token": reviewer})
                open_ms.append(elapsed)
        hours = (entries[-1].at_us - entries[0].at_us) / 3.6e9
        result = {
            "updates": args.updates,
            "snapshots": len(snapshots),
            "state_at_p50_ms": round(statistics.median(state_ms), 2),
            "state_at_p99_ms": round(percentile(state_ms, 0.99), 2),
            "timeline_open_ms": round(statistics.median(open_ms), 1),
            "timeline_first_page_items": len(page["items"]),
            "bytes_per_session_hour": int(sum(stored.values()) / hours),
            "update_bytes_per_hour": int(stored["updates"] / hours),
            "snapshot_bytes_per_hour": int(stored["snapshots"] / hours),
            "final_snapshot_bytes": len(snapshots[-1].state),
            "session_hours": round(hours, 2),
            "generation_s": round(generated, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    print(f"{'metric':<28} {'value':>12}")
    for key in ("state_at_p50_ms", "state_at_p99_ms", "timeline_open_ms", "bytes_per_session_hour"):
        print(f"{key:<28} {result[key]:>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
