"""Who is in each room, counted by connection.

A person appears when their first connection arrives and leaves only when their last one has
been gone for ``grace_s``: a reconnect (a Wi-Fi blink, a reloaded tab) neither duplicates them
nor shows them leaving.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rooms.types import Participant

PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4",
    "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000",
)  # fmt: skip


def colour_of(participant_id: str) -> str:
    """A stable colour per participant, the same on every node and after restarts."""
    digest = hashlib.sha256(participant_id.encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


@dataclass(slots=True)
class Present:
    participant: Participant
    colour: str
    since_us: int
    connections: int
    media: dict[str, bool] | None = None  # {"audio", "video"} while in the call

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.participant.id,
            "name": self.participant.name,
            "role": self.participant.role.value,
            "colour": self.colour,
            "since": self.since_us // 1000,
            "connections": self.connections,
            "media": self.media,
        }


LeaveHandler = Callable[[str, Participant], Awaitable[None]]


class Presence:
    def __init__(self, grace_s: float, on_leave: LeaveHandler) -> None:
        self.grace_s = grace_s
        self._on_leave = on_leave
        self._rooms: dict[str, dict[str, Present]] = {}
        self._leaving: dict[tuple[str, str], asyncio.Task[None]] = {}

    def arrive(self, room_id: str, participant: Participant, now_us: int) -> bool:
        """Count a new connection; returns whether the person has just joined."""
        pending = self._leaving.pop((room_id, participant.id), None)
        if pending is not None:
            pending.cancel()
        people = self._rooms.setdefault(room_id, {})
        present = people.get(participant.id)
        if present is not None:
            present.connections += 1
            return False
        people[participant.id] = Present(participant, colour_of(participant.id), now_us, 1)
        return True

    def set_media(self, room_id: str, participant_id: str, media: dict[str, bool] | None) -> bool:
        """Whether a person is in the call, with microphone and camera on or off; returns
        whether the person is here."""
        present = self._rooms.get(room_id, {}).get(participant_id)
        if present is not None:
            present.media = media
        return present is not None

    def clear_media(self, room_id: str) -> list[str]:
        """Nobody here is in the room's call any more; returns who was."""
        in_call = [p for p in self._rooms.get(room_id, {}).values() if p.media is not None]
        for present in in_call:
            present.media = None
        return [p.participant.id for p in in_call]

    def depart(self, room_id: str, participant: Participant) -> None:
        """Count a lost connection; the last one starts the grace period."""
        present = self._rooms.get(room_id, {}).get(participant.id)
        if present is None:
            return
        present.connections -= 1
        if present.connections == 0:
            key = (room_id, participant.id)
            self._leaving[key] = asyncio.create_task(self._leave_after_grace(room_id, participant))

    def people(self, room_id: str) -> list[dict[str, Any]]:
        return [p.to_json() for p in self._rooms.get(room_id, {}).values()]

    def forget(self, room_id: str) -> None:
        """Drop a deleted room: nobody is left in it, and no leave will be recorded."""
        for key in [k for k in self._leaving if k[0] == room_id]:
            self._leaving.pop(key).cancel()
        self._rooms.pop(room_id, None)

    def close(self) -> None:
        for task in self._leaving.values():
            task.cancel()

    async def _leave_after_grace(self, room_id: str, participant: Participant) -> None:
        await asyncio.sleep(self.grace_s)
        self._leaving.pop((room_id, participant.id), None)
        people = self._rooms.get(room_id, {})
        present = people.get(participant.id)
        if present is None or present.connections > 0:
            return
        del people[participant.id]
        if not people:
            self._rooms.pop(room_id, None)
        await self._on_leave(room_id, participant)
