"""One contract for the durable store, run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from conftest import PG_URL

from rooms.store import SqlStore, sqlite_url
from rooms.types import EntryKind, LogEntry, RoomInfo, RoomKind, Snapshot
from rooms.update_log import UpdateLog


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        s = SqlStore(sqlite_url(tmp_path / "store.db"))
        await s.start()
        yield s
        await s.close()
        return
    schema = f"t_{secrets.token_hex(6)}"
    s = SqlStore(PG_URL, schema)
    await s.start()
    yield s
    await s.close()
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


def info(room_id: str = "r1") -> RoomInfo:
    return RoomInfo(room_id, RoomKind.SOLO, "python", 1_000, None, "e1")


def entry(seq: int, room_id: str = "r1", author: str = "p_a") -> LogEntry:
    return LogEntry(room_id, seq, 1_000 + seq, author, EntryKind.UPDATE, bytes([seq % 256]) * 3)


async def test_rooms_round_trip(store: SqlStore) -> None:
    await store.create_room(info(), [entry(1, author="system")])
    assert await store.get_room("r1") == info()
    assert await store.get_room("missing") is None
    assert [e.author for e in await store.history("r1")] == ["system"]


async def test_load_is_newest_snapshot_plus_tail(store: SqlStore) -> None:
    await store.create_room(info(), [])
    await store.append([entry(i) for i in range(1, 6)], [Snapshot("r1", 3, 5, b"s3")])
    await store.append([entry(i) for i in range(6, 9)], [Snapshot("r1", 7, 9, b"s7")])
    loaded = await store.load("r1")
    assert loaded.snapshot == Snapshot("r1", 7, 9, b"s7")
    assert [e.seq for e in loaded.tail] == [8]
    assert loaded.last_seq == 8
    assert [e.seq for e in await store.history("r1")] == list(range(1, 9))
    assert (await store.history("r1"))[4] == entry(5)


async def test_rooms_do_not_see_each_other(store: SqlStore) -> None:
    await store.create_room(info("r1"), [entry(1, "r1")])
    await store.create_room(info("r2"), [entry(1, "r2"), entry(2, "r2")])
    assert len(await store.history("r1")) == 1
    assert (await store.load("r2")).last_seq == 2


async def test_retrying_a_committed_batch_changes_nothing(store: SqlStore) -> None:
    """A batch whose commit succeeded but whose reply was lost is written again on retry: the
    rows already there stay as they are, and the writer is not stuck on a duplicate key."""
    await store.create_room(info(), [entry(1)])
    await store.append([entry(1), entry(2)], [Snapshot("r1", 2, 5, b"s2")])
    await store.append([entry(1), entry(2)], [Snapshot("r1", 2, 5, b"s2")])
    assert await store.history("r1") == [entry(1), entry(2)]
    assert (await store.load("r1")).snapshot == Snapshot("r1", 2, 5, b"s2")


async def test_migrations_are_idempotent(store: SqlStore) -> None:
    await store.create_room(info(), [entry(1)])
    again = SqlStore(store.url, store.schema)
    await again.start()  # runs the migrations again: a no-op at head
    assert len(await again.history("r1")) == 1
    await again.close()


async def test_group_commit_batches_and_flush_waits(store: SqlStore) -> None:
    await store.create_room(info(), [])
    log = UpdateLog(store, window_s=0.05)
    log.start()
    for seq in range(1, 201):
        log.append(entry(seq))
    assert log.backlog == 200
    await log.flush()
    assert log.backlog == 0
    assert len(await store.history("r1")) == 200
    log.append(entry(201))
    await log.stop()  # drains what is still queued before it stops
    assert len(await store.history("r1")) == 201


async def test_update_log_keeps_entries_while_the_store_fails(tmp_path: Path) -> None:
    broken = SqlStore(sqlite_url(tmp_path / "s.db"))
    await broken.start()
    await broken.create_room(info(), [])
    log = UpdateLog(broken, window_s=0)
    log.start()
    await broken.close()  # every commit now fails
    log.append(entry(1))
    await asyncio.sleep(0.3)
    assert log.last_error is not None
    assert log.backlog == 1  # held for retry, not dropped
    await broken.start()  # the store comes back
    await asyncio.wait_for(log.flush(), 10)
    assert log.last_error is None
    assert [e.seq for e in await broken.history("r1")] == [1]
    await log.stop()
    await broken.close()
