"""The rooms of this node: creating them, loading them on first join, evicting idle ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pycrdt import Doc

from rooms.document import (
    DEFAULT_FILES,
    SERVER_ROOTS,
    initial_notes_update,
    initial_update,
    load_doc,
    new_doc,
    seeded_marker_update,
)
from rooms.errors import BadRequest, RoomNotFound
from rooms.room import Room, SnapshotPolicy, now_us
from rooms.store import Store
from rooms.types import SYSTEM_AUTHOR, EntryKind, LogEntry, RoomInfo, RoomKind, RoundState
from rooms.update_log import UpdateLog

log = logging.getLogger("clarityhire.rooms")

DocName = Literal["main", "notes"]


def doc_key(room_id: str, doc: DocName) -> str:
    """Where a document's updates are logged: the room's own document under its id, the
    interviewers' private notes under ``<id>:notes``."""
    return room_id if doc == "main" else f"{room_id}:{doc}"


class DocFanout(Protocol):
    """Cluster mode: how this node's documents reach the other nodes (server/cluster.py)."""

    def watch(self, key: str) -> None: ...
    def unwatch(self, key: str) -> None: ...
    def send_awareness(self, key: str, frame: bytes) -> None: ...
    def owns(self, room_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    snapshots: SnapshotPolicy
    idle_evict_seconds: float


class RoomRegistry:
    """Owns the live rooms of this node.

    A room is loaded from its newest snapshot plus the updates after it when someone opens it,
    and evicted (after a final snapshot and a flush of the log) once it has had no peers for
    ``idle_evict_seconds`` and is not ``in_use`` otherwise. Concurrent opens of one room share
    a single load.
    """

    def __init__(
        self,
        store: Store,
        update_log: UpdateLog,
        policy: RoomPolicy,
        fanout: DocFanout | None = None,
    ) -> None:
        self.store = store
        self.log = update_log
        self.policy = policy
        self.fanout = fanout  # set in cluster mode
        # Whether something else of a room lives here (cluster mode: its kernel or its call,
        # whose node must keep the room loaded, and so its lease, while they last).
        self.in_use: Callable[[str], bool] = lambda room_id: False
        self._live: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._evictions: dict[str, asyncio.Task[None]] = {}
        self._flushing: set[str] = set()
        # Rooms deleted while this node ran: a reconnect in the moments before their rows are
        # gone must not load them again.
        self._deleted: set[str] = set()

    @property
    def live_count(self) -> int:
        return len(self._live)

    def is_live(self, room_id: str) -> bool:
        return room_id in self._live

    async def create(
        self,
        kind: RoomKind,
        language: str,
        files: dict[str, str] | None = None,
        seed_from: str | None = None,
        time_limit_s: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> RoomInfo:
        """Create a room from files (and extra ``meta``), or from another room's whole
        history."""
        if files is not None and seed_from is not None:
            raise BadRequest("give either files or seed_from, not both")
        info = RoomInfo(
            id=secrets.token_urlsafe(9),
            kind=kind,
            language=language,
            created_us=now_us(),
            seeded_from=seed_from,
            epoch=secrets.token_hex(8),
            time_limit_s=time_limit_s,
        )
        if seed_from is not None:
            seed = await self._copied_history(info, seed_from)
        else:
            chosen = files if files is not None else DEFAULT_FILES.get(language, {"main": ""})
            update = initial_update(info, chosen, meta)
            seed = [LogEntry(info.id, 1, info.created_us, SYSTEM_AUTHOR, EntryKind.SEED, update)]
        notes = initial_notes_update()
        notes_key = doc_key(info.id, "notes")
        seed.append(LogEntry(notes_key, 1, info.created_us, SYSTEM_AUTHOR, EntryKind.SEED, notes))
        await self.store.create_room(info, seed)
        log.info("room created", extra={"room": info.id, "kind": kind.value})
        return info

    async def info(self, room_id: str) -> RoomInfo:
        """A room's record; raises ``RoomNotFound``."""
        if room_id in self._deleted:
            raise RoomNotFound(f"no room {room_id!r}")
        room = self._live.get(room_id)
        if room is not None:
            return room.info
        info = await self.store.get_room(room_id)
        if info is None:
            raise RoomNotFound(f"no room {room_id!r}")
        return info

    def live_room(self, key: str) -> Room | None:
        """The loaded document under ``key`` (a room id, or ``<id>:notes``), if any."""
        return self._live.get(key)

    async def open(self, room_id: str, doc: DocName = "main", fresh: bool = False) -> Room:
        """The live document of a room, loaded if needed; cancels a pending idle eviction.

        ``fresh`` (cluster mode): first read what other nodes committed that this node has
        not heard of yet, for a newcomer's first sync or a run of the files as they are."""
        room = await self._open(room_id, doc)
        if fresh and self.fanout is not None:
            await self.catch_up(room.key)
        return room

    async def _open(self, room_id: str, doc: DocName) -> Room:
        key = doc_key(room_id, doc)
        eviction = self._evictions.get(key)
        if eviction is not None:
            if key in self._flushing:
                await asyncio.shield(eviction)  # then load the room afresh
            else:
                eviction.cancel()
                del self._evictions[key]
        room = self._live.get(key)
        if room is not None:
            return room
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.create_task(self._load(room_id, key))
            self._loading[key] = loading
            loading.add_done_callback(lambda _t: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    def release(self, room: Room) -> None:
        """Called when a peer left: schedule eviction once the room is empty."""
        if room.peers or room.key in self._evictions or room.deleted:
            return
        task = asyncio.create_task(self._evict_when_idle(room))
        self._evictions[room.key] = task
        task.add_done_callback(lambda t: self._forget_eviction(room.key, t))

    async def remove(self, room_id: str) -> None:
        """Close a room that is being deleted: its connections are closed (4404), it is
        dropped from memory, and the log holds nothing more of it once this returns."""
        self._deleted.add(room_id)
        for key in (doc_key(room_id, "main"), doc_key(room_id, "notes")):
            loading = self._loading.get(key)
            if loading is not None:
                with contextlib.suppress(Exception):
                    await loading
            eviction = self._evictions.pop(key, None)
            if eviction is not None:
                eviction.cancel()
            room = self._live.pop(key, None)
            if room is None:
                continue
            room.deleted = True
            if self.fanout is not None:
                self.fanout.unwatch(key)
            for peer in room.peers:
                with contextlib.suppress(Exception):
                    await peer.close(4404, "the room was deleted")
        await self.log.flush()

    async def close(self) -> None:
        """Snapshot every live room and wait until the log holds everything."""
        for task in list(self._evictions.values()):
            task.cancel()
        for room in self._live.values():
            room.take_snapshot()
        await self.log.flush()
        self._live.clear()

    async def settle(self, room: Room) -> None:
        """Commit what this node accepted for a room and, in a cluster, apply what the others
        committed: the document then holds the log up to ``room.seq``."""
        await self.log.flush()
        if self.fanout is not None:
            await self.catch_up(room.key)

    # -- cluster mode ------------------------------------------------------------------------

    async def committed(self, entries: list[LogEntry]) -> None:
        """The log numbered this node's entries: tell their rooms."""
        seqs: dict[str, list[int]] = {}
        for entry in entries:
            seqs.setdefault(entry.room_id, []).append(entry.seq)
        for key, numbers in seqs.items():
            room = self._live.get(key)
            if room is not None:
                await room.own_numbered(numbers)

    async def remote_entries(self, key: str, entries: list[LogEntry]) -> None:
        """Entries another node committed, for a document this node holds."""
        room = self._live.get(key)
        if room is not None and not room.deleted:
            await room.apply_remote(entries)

    async def remote_awareness(self, key: str, frame: bytes) -> None:
        room = self._live.get(key)
        if room is not None and not room.deleted:
            await room.apply_remote_awareness(frame)

    async def catch_up(self, key: str) -> None:
        """Apply what the log holds after what this node's document holds."""
        room = self._live.get(key)
        if room is None or room.deleted:
            return
        entries = await self.store.updates_until(key, room.seq, None)
        if entries:
            await room.apply_remote(entries)

    async def catch_up_all(self) -> None:
        """Catch up every live document whose log has gone further (a poll of the heads)."""
        heads = await self.store.heads(list(self._live))
        for key, head in heads.items():
            room = self._live.get(key)
            if room is not None and head > room.seq:
                await self.catch_up(key)

    async def follow_log(self, every_s: float) -> None:
        """Cluster mode, forever: catch up from the log every ``every_s`` (what no message
        announced: a message lost, a node that died between commit and publish)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.catch_up_all()
            except Exception:
                log.exception("catching up from the log failed")

    # -- internals ---------------------------------------------------------------------------

    async def _load(self, room_id: str, key: str) -> Room:
        info = await self.info(room_id)
        history = await self.store.load(key)
        doc = new_doc() if key == room_id else Doc()
        if history.snapshot is not None:
            doc.apply_update(history.snapshot.state)
        for entry in history.tail:
            doc.apply_update(entry.update)
        snapshot_seq = history.snapshot.seq if history.snapshot else 0
        room = Room(
            info,
            key,
            doc,
            history.last_seq,
            snapshot_seq,
            self.log,
            self.policy.snapshots,
            base_state=history.snapshot.state if history.snapshot else None,
            recent=[entry.update for entry in history.tail],
            server_roots=SERVER_ROOTS if key == room_id else (),
        )
        room.frozen = (await self.store.get_round(room_id)).state == RoundState.ENDED
        if self.fanout is not None:
            room.clustered = True
            room.takes_snapshots = self.fanout.owns(room_id)
            room.on_awareness = self.fanout.send_awareness
            self.fanout.watch(key)
        self._live[key] = room
        log.info("room loaded", extra={"room": room_id, "doc": key, "seq": room.seq})
        return room

    async def _evict_when_idle(self, room: Room) -> None:
        while True:
            await asyncio.sleep(self.policy.idle_evict_seconds)
            if room.peers:
                return
            if not self.in_use(room.id):
                break
        # From here on the eviction cannot be cancelled: an open() waits for it and reloads.
        self._flushing.add(room.key)
        try:
            room.take_snapshot()
            await self.log.flush()
            if self._live.get(room.key) is room:
                del self._live[room.key]
                if self.fanout is not None:
                    self.fanout.unwatch(room.key)
                log.info("room evicted", extra={"room": room.id, "doc": room.key})
        finally:
            self._flushing.discard(room.key)

    def _forget_eviction(self, room_id: str, task: asyncio.Task[None]) -> None:
        if self._evictions.get(room_id) is task:
            del self._evictions[room_id]

    async def _copied_history(self, info: RoomInfo, source_id: str) -> list[LogEntry]:
        source = await self.store.get_room(source_id)
        if source is None:
            raise BadRequest(f"seed_from: no room {source_id!r}")
        await self.log.flush()  # the source's newest edits may still be in the writer's queue
        history = await self.store.history(source_id)
        copied = [LogEntry(info.id, e.seq, e.at_us, e.author, e.kind, e.update) for e in history]
        last_seq = copied[-1].seq if copied else 0
        doc = load_doc([e.update for e in copied])
        marker = seeded_marker_update(doc, info, last_seq)
        copied.append(
            LogEntry(info.id, last_seq + 1, info.created_us, SYSTEM_AUTHOR, EntryKind.SEED, marker)
        )
        return copied
