"""The round lifecycle, enforced by the server.

Live rooms: ``scheduled -> open`` when the interviewer first arrives, ``open -> live`` when
the interviewer starts the round, ``-> ended`` when the interviewer ends it. Solo rooms: the
clock starts at the candidate's first arrival (``live``, with a deadline from the room's time
limit), warnings go out 5 and 1 minutes before the deadline, and the round ends when the
candidate submits or, at the deadline, by itself. Ending freezes the document for candidates,
stores a stamped final snapshot and puts the end on the timeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from rooms.errors import Conflict, Forbidden
from rooms.registry import RoomRegistry
from rooms.room import now_us
from rooms.store import Store
from rooms.types import (
    SYSTEM_AUTHOR,
    Participant,
    Role,
    RoomInfo,
    RoomKind,
    Round,
    RoundState,
    TimelineEvent,
)

log = logging.getLogger("clarityhire.rounds")

WARNINGS_S = (300, 60)

# notify(room_id, event name, payload): tells the room's connections (the control plane).
Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class RoundKeeper:
    def __init__(
        self,
        store: Store,
        registry: RoomRegistry,
        notify: Notify,
        warnings_s: tuple[float, ...] = WARNINGS_S,
        on_change: Callable[[str, Round], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.notify = notify
        self.warnings_s = warnings_s
        self.on_change = on_change  # e.g. ready the room's kernel, or shut it down
        self._locks: dict[str, asyncio.Lock] = {}
        self._rounds: dict[str, Round] = {}
        self._clocks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Re-arm the clocks of solo rounds that were running when the server stopped."""
        for room_id, deadline_us in await self.store.live_rounds_with_deadline():
            self._arm(room_id, deadline_us)

    async def stop(self) -> None:
        for task in self._clocks.values():
            task.cancel()
        await asyncio.gather(*self._clocks.values(), return_exceptions=True)
        self._clocks.clear()

    def forget(self, room_id: str) -> None:
        """Drop a deleted room: its clock stops and its round is no longer cached."""
        clock = self._clocks.pop(room_id, None)
        if clock is not None:
            clock.cancel()
        self._rounds.pop(room_id, None)
        self._locks.pop(room_id, None)

    def refresh(self, room_id: str) -> None:
        """Forget this node's copy of a room's round (another node changed it)."""
        self._rounds.pop(room_id, None)

    async def current(self, room_id: str) -> Round:
        """The round of a room (this node's copy: every change goes through this keeper)."""
        known = self._rounds.get(room_id)
        if known is None:
            known = self._rounds[room_id] = await self.store.get_round(room_id)
        return known

    async def arrived(self, info: RoomInfo, who: Participant) -> Round:
        """A participant connected: an interviewer opens a live room, a candidate starts a solo
        room's clock."""
        async with self._lock(info.id):
            current = await self.current(info.id)
            if current.state != RoundState.SCHEDULED:
                return current
            if info.kind == RoomKind.LIVE and who.role == Role.INTERVIEWER:
                return await self._move(info.id, replace(current, state=RoundState.OPEN), who)
            if info.kind == RoomKind.SOLO and who.role == Role.CANDIDATE:
                started = now_us()
                deadline = started + info.time_limit_s * 1_000_000 if info.time_limit_s else None
                moved = replace(
                    current, state=RoundState.LIVE, started_us=started, deadline_us=deadline
                )
                await self._save(info.id, moved)
                if deadline is not None:
                    self._arm(info.id, deadline)  # armed first: the clock must run whatever
                return await self._move(info.id, moved, who)
            return current

    async def act(self, info: RoomInfo, who: Participant, action: str) -> Round:
        """``start`` and ``end`` (interviewer, live rooms) or ``submit`` (candidate, solo)."""
        async with self._lock(info.id):
            current = await self.current(info.id)
            if current.state == RoundState.ENDED:
                raise Conflict("the round has already ended")
            if action == "start":
                if info.kind != RoomKind.LIVE or who.role != Role.INTERVIEWER:
                    raise Forbidden("only the interviewer starts a live round")
                if current.state == RoundState.LIVE:
                    raise Conflict("the round is already live")
                return await self._move(
                    info.id, replace(current, state=RoundState.LIVE, started_us=now_us()), who
                )
            if action == "end":
                if info.kind != RoomKind.LIVE or who.role != Role.INTERVIEWER:
                    raise Forbidden("only the interviewer ends a live round")
                return await self._end(info.id, current, who.id, "interviewer")
            if action == "submit":
                if info.kind != RoomKind.SOLO or who.role != Role.CANDIDATE:
                    raise Forbidden("only the candidate submits a solo test")
                if current.state != RoundState.LIVE:
                    raise Conflict("the test has not started")
                return await self._end(info.id, current, who.id, "candidate")
            raise Conflict(f"unknown round action {action!r}")

    # -- internals ---------------------------------------------------------------------------

    async def _save(self, room_id: str, round_: Round) -> None:
        await self.store.save_round(room_id, round_)
        self._rounds[room_id] = round_

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._locks.setdefault(room_id, asyncio.Lock())

    async def _move(self, room_id: str, moved: Round, who: Participant) -> Round:
        await self._save(room_id, moved)
        await self._record(room_id, who.id, f"round.{moved.state.value}", moved.to_json())
        await self.notify(room_id, "round", moved.to_json())
        if self.on_change is not None:
            await self.on_change(room_id, moved)
        return moved

    async def _end(self, room_id: str, current: Round, author: str, reason: str) -> Round:
        room = await self.registry.open(room_id)
        try:
            room.frozen = True
            # The stamped final state: a snapshot that is committed before anyone is told.
            await self.registry.settle(room)
            state, seq = room.final_snapshot(), room.seq
            await self.registry.log.flush()
        finally:
            self.registry.release(room)
        ended = replace(current, state=RoundState.ENDED, ended_us=now_us(), ended_reason=reason)
        await self._save(room_id, ended)
        stamp = {
            **ended.to_json(),
            "final_seq": seq,
            "final_sha256": hashlib.sha256(state).hexdigest(),
        }
        await self._record(room_id, author, "round.ended", stamp)
        await self.notify(room_id, "round", ended.to_json())
        if self.on_change is not None:
            await self.on_change(room_id, ended)
        clock = self._clocks.pop(room_id, None)
        if clock is not None and clock is not asyncio.current_task():
            clock.cancel()
        log.info("round ended", extra={"room": room_id, "reason": reason, "seq": seq})
        return ended

    async def _record(self, room_id: str, author: str, type_: str, data: dict[str, Any]) -> None:
        await self.store.append_event(TimelineEvent(room_id, now_us(), author, type_, data))

    def _arm(self, room_id: str, deadline_us: int) -> None:
        previous = self._clocks.pop(room_id, None)
        if previous is not None:
            previous.cancel()
        self._clocks[room_id] = asyncio.create_task(self._clock(room_id, deadline_us))

    async def _clock(self, room_id: str, deadline_us: int) -> None:
        for before_s in self.warnings_s:
            wait_s = (deadline_us - int(before_s * 1_000_000) - now_us()) / 1e6
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                payload = {"seconds_left": before_s, "deadline": deadline_us // 1000}
                try:  # a warning is worth a try, not worth missing the deadline for
                    await self._record(room_id, SYSTEM_AUTHOR, "round.warning", payload)
                    await self.notify(room_id, "round_warning", payload)
                except Exception:
                    log.exception("round warning failed", extra={"room": room_id})
        await asyncio.sleep(max(0.0, (deadline_us - now_us()) / 1e6))
        delay = 0.5
        while True:  # the end must happen: retry through a failing store
            try:
                async with self._lock(room_id):
                    self.refresh(room_id)  # in a cluster, another node may have ended it
                    current = await self.current(room_id)
                    if current.state == RoundState.LIVE:
                        await self._end(room_id, current, SYSTEM_AUTHOR, "deadline")
                return
            except Exception:
                log.exception("ending a round at its deadline failed", extra={"room": room_id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
