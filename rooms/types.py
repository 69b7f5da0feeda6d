"""Plain data shared by the room domain."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class Role(StrEnum):
    INTERVIEWER = "interviewer"
    CANDIDATE = "candidate"
    OBSERVER = "observer"
    REVIEWER = "reviewer"

    @property
    def can_edit(self) -> bool:
        return self in (Role.INTERVIEWER, Role.CANDIDATE)


class RoomKind(StrEnum):
    LIVE = "live"
    SOLO = "solo"


class EntryKind(StrEnum):
    """How an update entered the log."""

    SEED = "seed"  # initial files, or history copied from the room it was seeded from
    UPDATE = "update"  # an edit a participant sent
    SYNC = "sync"  # content a (re)connecting client held that the server lacked
    SYSTEM = "system"  # written by the server itself (metadata, outputs)


@dataclass(frozen=True, slots=True)
class Participant:
    """Who is behind a connection, as stated by their signed token."""

    id: str
    name: str
    role: Role


SYSTEM_AUTHOR = "system"


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room's durable record (its document lives in the update log)."""

    id: str
    kind: RoomKind
    language: str
    created_us: int
    seeded_from: str | None = None
    epoch: str = ""
    time_limit_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "language": self.language,
            "created_at": self.created_us // 1000,
            "seeded_from": self.seeded_from,
            "epoch": self.epoch,
            "time_limit_seconds": self.time_limit_s,
        }


class RoundState(StrEnum):
    """``scheduled -> open -> live -> ended``; solo rooms go straight to live at first join."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    LIVE = "live"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Round:
    """Where a room's round is; times are server UTC microseconds."""

    state: RoundState = RoundState.SCHEDULED
    started_us: int | None = None
    deadline_us: int | None = None
    ended_us: int | None = None
    ended_reason: str | None = None  # "interviewer", "candidate" (early submit), "deadline"

    def to_json(self) -> dict[str, Any]:
        def ms(us: int | None) -> int | None:
            return None if us is None else us // 1000

        return {
            "state": self.state.value,
            "started_at": ms(self.started_us),
            "deadline": ms(self.deadline_us),
            "ended_at": ms(self.ended_us),
            "ended_reason": self.ended_reason,
        }


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A control-plane event on a room's timeline: chat, lifecycle, presence, client signal."""

    room_id: str
    at_us: int
    author: str
    type: str
    data: dict[str, Any]


class LogEntry(NamedTuple):
    """One accepted update: the unit of the recording.

    A named tuple, not a dataclass: one is made per keystroke, and its fields are in the
    column order of the ``updates`` table so a batch goes to the driver as it is.
    """

    room_id: str
    seq: int
    at_us: int
    author: str
    kind: EntryKind
    update: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The full document state after the update with sequence number ``seq``."""

    room_id: str
    seq: int
    at_us: int
    state: bytes


@dataclass(slots=True)
class LoadedHistory:
    """What the store returns to rebuild a room: the newest snapshot and the updates after it."""

    snapshot: Snapshot | None
    tail: list[LogEntry] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        if self.tail:
            return self.tail[-1].seq
        return self.snapshot.seq if self.snapshot else 0
