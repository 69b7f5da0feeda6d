"""The round keeper in process, with a real store: the solo clock's warnings and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rooms.registry import RoomPolicy, RoomRegistry
from rooms.room import SnapshotPolicy
from rooms.rounds import RoundKeeper
from rooms.store import SqlStore, sqlite_url
from rooms.types import Participant, Role, RoomKind, RoundState
from rooms.update_log import UpdateLog

CANDIDATE = Participant("p_cand", "Cal", Role.CANDIDATE)


async def test_solo_clock_warns_then_submits_and_survives_a_restart(tmp_path: Path) -> None:
    store = SqlStore(sqlite_url(tmp_path / "rooms.db"))
    await store.start()
    log = UpdateLog(store, 0.01)
    log.start()
    registry = RoomRegistry(store, log, RoomPolicy(SnapshotPolicy(100, 60), 60))
    heard: list[tuple[str, str, dict[str, Any]]] = []

    async def notify(room_id: str, event: str, payload: dict[str, Any]) -> None:
        heard.append((room_id, event, payload))

    info = await registry.create(RoomKind.SOLO, "python", {"main.py": ""}, time_limit_s=3)
    keeper = RoundKeeper(store, registry, notify, warnings_s=(2.0, 1.0))
    started = await keeper.arrived(info, CANDIDATE)
    assert started.state == RoundState.LIVE
    await asyncio.sleep(1.3)
    assert [(e, p["seconds_left"]) for _, e, p in heard if e == "round_warning"] == [
        ("round_warning", 2.0)
    ]
    # The server stops; a new keeper re-arms the clock from the store.
    await keeper.stop()
    keeper = RoundKeeper(store, registry, notify, warnings_s=(2.0, 1.0))
    await keeper.start()
    await asyncio.sleep(2.2)
    events = [e for _, e, _ in heard]
    assert events.count("round_warning") == 2
    assert heard[-1][1] == "round" and heard[-1][2]["state"] == "ended"
    assert heard[-1][2]["ended_reason"] == "deadline"
    stored = await store.events(info.id, ("round.warning", "round.ended"), 10)
    assert [e.type for e in stored] == ["round.warning", "round.warning", "round.ended"]
    assert (await store.get_round(info.id)).state == RoundState.ENDED
    await keeper.stop()
    await registry.close()
    await log.stop()
    await store.close()
