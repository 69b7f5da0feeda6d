"""A live room: the shared document in memory, its connected peers and their awareness.

A room does not know how its peers are connected. It applies updates, fans them out, appends
them to the durable log, and relays awareness. Transport code turns wire messages into calls
of these methods and turns ``RoomError`` into close codes.

In cluster mode (``clustered``) several nodes hold the same room. The log numbers entries when
it commits them, so a room appends its own unnumbered, hears their numbers afterwards
(``own_numbered``), and applies the entries other nodes committed in log order
(``apply_remote``). ``seq`` is then the end of the log prefix the document is known to hold;
the document holds exactly that prefix (and may be snapshotted) when none of its own entries
waits for a number and nothing later has arrived out of order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pycrdt import Array, Map, TransactionEvent, get_update, merge_updates

from rooms.document import RoomDoc, new_doc
from rooms.errors import (
    DocumentFrozen,
    Forbidden,
    InvalidUpdate,
    MessageTooLarge,
    ProtocolError,
    RoomNotFound,
)
from rooms.protocol import (
    AwarenessEntry,
    SyncType,
    encode_awareness,
    encode_sync,
    parse_awareness,
    parse_message,
)
from rooms.types import (
    SYSTEM_AUTHOR,
    EntryKind,
    LogEntry,
    Participant,
    Role,
    RoomInfo,
    Snapshot,
)
from rooms.update_log import UpdateLog

log = logging.getLogger("clarityhire.room")

EMPTY_STATE_VECTOR = b"\x00"
EMPTY_UPDATE = b"\x00\x00"
MAX_AWARENESS_IDS_PER_PEER = 4
MAX_AWARENESS_STATE_BYTES = 8192
# How long a departed client id stays reserved for its participant (see apply_awareness).
AWARENESS_TOMBSTONE_SECONDS = 120.0
# Awareness relayed from another node is shown to newcomers for this long after it was last
# renewed (Yjs clients renew theirs every 15 s and drop others' after 30 s).
REMOTE_AWARENESS_SECONDS = 30.0


class Peer(Protocol):
    """One connection to a room."""

    participant: Participant
    awareness_ids: set[int]

    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    every_updates: int
    every_seconds: float


@dataclass(slots=True)
class _AwarenessState:
    entry: AwarenessEntry
    owner: Peer


@dataclass(frozen=True, slots=True)
class _Departed:
    """A client id whose connection left: its last clock, and whose it was."""

    participant_id: str
    clock: int
    until: float


def now_us() -> int:
    return time.time_ns() // 1000


class Room:
    def __init__(
        self,
        info: RoomInfo,
        key: str,
        doc: RoomDoc,
        last_seq: int,
        snapshot_seq: int,
        update_log: UpdateLog,
        snapshots: SnapshotPolicy,
        base_state: bytes | None = None,
        recent: list[bytes] | None = None,
        server_roots: tuple[str, ...] = (),
    ) -> None:
        self.info = info
        self.key = key  # the document's key in the log: the room id, or "<room id>:notes"
        self.doc = doc
        self.seq = last_seq
        self.frozen = False  # after the round ends, candidates can no longer edit
        self.deleted = False  # removed with everything recorded of it: nothing more is written
        self.peers: tuple[Peer, ...] = ()
        self._log = update_log
        self._snapshots = snapshots
        self._awareness: dict[int, _AwarenessState] = {}
        self._departed: dict[int, _Departed] = {}
        self._changes: list[bytes] = []
        self._full_state: bytes | None = None
        self._since_snapshot = last_seq - snapshot_seq
        self._snapshot_seq = snapshot_seq
        self._last_snapshot_at = time.monotonic()
        # What the document was built from (the newest snapshot and every update after it),
        # kept so that an update touching a server-only root can be taken back.
        self._base_state = base_state
        self._recent = list(recent or [])
        self._server_roots = server_roots
        self._server_writing = False
        self._server_root_touched = False
        self._guards: list[tuple[object, object]] = []
        self._watch(doc)
        # Cluster mode (see the module's docstring).
        self.clustered = False
        self.takes_snapshots = True  # in a cluster, only the room's owner node snapshots
        self.on_awareness: Callable[[str, bytes], None] | None = None  # to the other nodes
        self._unnumbered = 0
        self._ahead: dict[int, LogEntry | None] = {}  # None: one of ours, already applied
        self._remote_awareness: dict[int, tuple[AwarenessEntry, float]] = {}

    @property
    def id(self) -> str:
        return self.info.id

    # -- peers -------------------------------------------------------------------------------

    def join(self, peer: Peer) -> list[bytes]:
        """Add a peer; returns the messages that open its session (sync step 1, awareness)."""
        self.peers = (*self.peers, peer)
        opening = [encode_sync(SyncType.STEP1, self.doc.get_state())]
        frame = self.awareness_frame()
        if frame is not None:
            opening.append(frame)
        return opening

    async def leave(self, peer: Peer) -> None:
        """Remove a peer and tell the others that its awareness states are gone."""
        self.peers = tuple(p for p in self.peers if p is not peer)
        gone = []
        for client_id in peer.awareness_ids:
            state = self._awareness.get(client_id)
            if state is not None and state.owner is peer:
                del self._awareness[client_id]
                gone.append(AwarenessEntry(client_id, state.entry.clock + 1, b"null"))
                self._depart(client_id, peer, state.entry.clock + 1)
        if gone:
            frame = encode_awareness(gone)
            if self.on_awareness is not None:
                self.on_awareness(self.key, frame)
            if self.peers:
                await self._broadcast(frame, exclude=None)

    # -- document ----------------------------------------------------------------------------

    def sync_reply(self, state_vector: bytes) -> bytes:
        """Sync step 2 for a peer that holds ``state_vector``: everything it lacks."""
        if state_vector == EMPTY_STATE_VECTOR:
            if self._full_state is None:
                self._full_state = encode_sync(SyncType.STEP2, self.doc.get_update())
            return self._full_state
        try:
            update = self.doc.get_update(state_vector)
        except ValueError as e:
            raise ProtocolError("malformed state vector in sync step 1") from e
        return encode_sync(SyncType.STEP2, update)

    async def apply_update(
        self, update: bytes, author: Participant, kind: EntryKind, origin: Peer | None
    ) -> bool:
        """Apply a peer's update, log it and fan it out; returns whether it changed anything.

        A read-only participant may send an update only if it adds nothing: the stock Yjs
        provider answers the server's sync step 1 with a step 2 even when it has nothing new.
        """
        if self.deleted:
            raise RoomNotFound("the room was deleted")
        if not author.role.can_edit:
            if self._would_change(update):
                raise Forbidden(f"role {author.role.value} is read-only: edits are refused")
            return False
        if self.frozen and author.role == Role.CANDIDATE:
            if self._would_change(update):
                raise DocumentFrozen("the round has ended: the document is read-only")
            return False
        self._changes.clear()
        try:
            self.doc.apply_update(update)
        except ValueError as e:
            raise InvalidUpdate(f"update rejected by the CRDT: {e}") from e
        if self._server_root_touched:
            self._take_back()
            roots = " and ".join(self._server_roots)
            raise Forbidden(f"{roots} are written by the server only: the update was refused")
        if _left_pending(update, self.doc.get_state()):
            # Held back by the CRDT until what it depends on arrives: it would then be logged
            # under whoever sent that, and could land after the round ends. Refuse it.
            self._take_back()
            raise InvalidUpdate("update depends on changes this room does not have")
        if not self._changes:
            return False
        await self._publish(author.id, kind, exclude=origin)
        return True

    async def apply_system_change(self, change: Callable[[], None]) -> None:
        """Make a change as the server (execution records, metadata): logged and fanned out
        like any edit, with the system as its author."""
        if self.deleted:
            raise RoomNotFound("the room was deleted")
        self._changes.clear()
        self._server_writing = True
        try:
            with self.doc.transaction(origin="system"):
                change()
        finally:
            self._server_writing = False
        if self._changes:
            await self._publish(SYSTEM_AUTHOR, EntryKind.SYSTEM, exclude=None)

    async def apply_awareness(
        self, peer: Peer, frame: bytes, entries: list[AwarenessEntry]
    ) -> None:
        """Keep the latest awareness state per client and relay it to everyone else.

        A client id belongs to the participant who first used it (their reconnects may take it
        over); states are small, and a connection speaks for a few client ids at most.
        The y-websocket client sends back every state it receives, so entries for client ids
        of other participants are dropped without fuss, and so are stale echoes of a client
        that left. A participant reconnecting with an old clock is told its clock is behind,
        which makes its client announce itself again with a newer one that others accept.
        """
        accepted: list[AwarenessEntry] = []
        behind: list[AwarenessEntry] = []
        for entry in entries:
            if len(entry.state_json) > MAX_AWARENESS_STATE_BYTES:
                raise MessageTooLarge(f"awareness state over {MAX_AWARENESS_STATE_BYTES} bytes")
            owner = self._awareness.get(entry.client_id)
            if owner is not None:
                if owner.owner.participant.id == peer.participant.id:
                    accepted.append(entry)
                continue
            if entry.client_id in self._remote_awareness:
                continue  # someone's on another node, echoed back
            departed = self._departed_entry(entry.client_id)
            if departed is not None:
                if departed.participant_id != peer.participant.id:
                    continue
                if entry.clock <= departed.clock:
                    if not entry.removed:
                        behind.append(AwarenessEntry(entry.client_id, departed.clock, b"null"))
                    continue
                del self._departed[entry.client_id]
            if not entry.removed and len(peer.awareness_ids) >= MAX_AWARENESS_IDS_PER_PEER:
                raise Forbidden("too many awareness client ids on one connection")
            accepted.append(entry)
        for entry in accepted:
            owner = self._awareness.get(entry.client_id)
            if owner is not None and owner.owner is not peer:
                owner.owner.awareness_ids.discard(entry.client_id)
            if entry.removed:
                self._awareness.pop(entry.client_id, None)
                peer.awareness_ids.discard(entry.client_id)
                self._depart(entry.client_id, peer, entry.clock)
            else:
                self._awareness[entry.client_id] = _AwarenessState(entry, peer)
                peer.awareness_ids.add(entry.client_id)
        if behind:
            await peer.send(encode_awareness(behind))
        if accepted:
            relayed = frame if len(accepted) == len(entries) else encode_awareness(accepted)
            if self.on_awareness is not None:
                self.on_awareness(self.key, relayed)
            await self._broadcast(relayed, exclude=peer)

    def _depart(self, client_id: int, peer: Peer, clock: int) -> None:
        until = time.monotonic() + AWARENESS_TOMBSTONE_SECONDS
        self._departed[client_id] = _Departed(peer.participant.id, clock, until)

    def _departed_entry(self, client_id: int) -> _Departed | None:
        departed = self._departed.get(client_id)
        if departed is not None and departed.until < time.monotonic():
            # Expired: forget it, and every other expired one while we are at it.
            now = time.monotonic()
            self._departed = {k: v for k, v in self._departed.items() if v.until >= now}
            return None
        return departed

    def awareness_frame(self) -> bytes | None:
        """Every known awareness state, for a newcomer or a client that asks."""
        entries = [s.entry for s in self._awareness.values()]
        if self._remote_awareness:
            fresh = time.monotonic() - REMOTE_AWARENESS_SECONDS
            self._remote_awareness = {
                k: v for k, v in self._remote_awareness.items() if v[1] >= fresh
            }
            entries += [entry for entry, _ in self._remote_awareness.values()]
        return encode_awareness(entries) if entries else None

    # -- cluster mode ------------------------------------------------------------------------

    async def own_numbered(self, seqs: list[int]) -> None:
        """The log numbered entries this room appended (in the order it appended them).
        Other nodes' entries that came in meanwhile, waiting behind these, are applied now."""
        self._unnumbered = max(0, self._unnumbered - len(seqs))
        for seq in seqs:
            if seq > self.seq:
                self._ahead[seq] = None
        for entry in self._advance_applied():
            await self._apply_committed(entry)
        self._snapshot_if_exact()

    async def apply_remote(self, entries: list[LogEntry]) -> None:
        """Entries another node committed (in any order, perhaps again): applied and fanned
        out in log order from ``seq`` on; later ones wait for what is missing."""
        for entry in entries:
            if entry.seq > self.seq:
                self._ahead.setdefault(entry.seq, entry)
        for entry in self._advance_applied():
            await self._apply_committed(entry)
        self._snapshot_if_exact()

    @property
    def missing(self) -> bool:
        """Whether entries after ``seq`` are known of but something before them is not."""
        return bool(self._ahead)

    async def apply_remote_awareness(self, frame: bytes) -> None:
        """Awareness relayed by another node: kept for newcomers and sent to everyone here."""
        try:
            entries = parse_awareness(parse_message(frame)[2])
        except Exception:
            log.warning("malformed awareness from another node", extra={"room": self.id})
            return
        now = time.monotonic()
        for entry in entries:
            if entry.client_id in self._awareness:
                continue
            if entry.removed:
                self._remote_awareness.pop(entry.client_id, None)
            else:
                self._remote_awareness[entry.client_id] = (entry, now)
        await self._broadcast(frame, exclude=None)

    def _advance_applied(self) -> list[LogEntry]:
        """Move ``seq`` over every entry that follows on; returns the remote ones to apply."""
        to_apply = []
        while self.seq + 1 in self._ahead:
            self.seq += 1
            entry = self._ahead.pop(self.seq)
            if entry is not None:
                to_apply.append(entry)
        return to_apply

    async def _apply_committed(self, entry: LogEntry) -> None:
        before = self.doc.get_state()
        self._changes.clear()
        self._server_writing = True  # another node's kernel writes outputs, legitimately
        try:
            self.doc.apply_update(entry.update)
        except ValueError:
            log.exception("a committed entry did not apply", extra={"room": self.id})
            return
        finally:
            self._server_writing = False
        self._recent.append(entry.update)
        self._since_snapshot += 1
        if self._changes and self.doc.get_state() != before:
            await self._broadcast(encode_sync(SyncType.UPDATE, entry.update), exclude=None)

    def _snapshot_if_exact(self) -> None:
        if self.takes_snapshots and self._snapshot_due() and self._exact():
            self.take_snapshot()

    def _exact(self) -> bool:
        return not self.clustered or (self._unnumbered == 0 and not self._ahead)

    def take_snapshot(self) -> None:
        """Queue the full state as of the newest logged update, if anything changed since."""
        if self._since_snapshot and not self.deleted:
            self.final_snapshot()

    def final_snapshot(self) -> bytes:
        """The full state now, stored as a snapshot unless the newest one already holds it."""
        state = self.doc.get_update()
        if self._snapshot_seq != self.seq and self._exact():
            self._log.add_snapshot(Snapshot(self.key, self.seq, now_us(), state))
            self._snapshot_seq = self.seq
        self._base_state = state
        self._recent.clear()
        self._since_snapshot = 0
        self._last_snapshot_at = time.monotonic()
        return state

    # -- internals ---------------------------------------------------------------------------

    def _watch(self, doc: RoomDoc) -> None:
        doc.observe(self._on_change)
        # pycrdt drops a type's observer with its subscription object: keep them.
        self._guards = []
        for name in self._server_roots:
            root = doc.get(name, type=Array) if name == "outputs" else doc.get(name, type=Map)
            self._guards.append((root, root.observe_deep(self._on_server_root_change)))

    def _on_change(self, event: TransactionEvent) -> None:
        self._changes.append(event.update)
        self._full_state = None

    def _on_server_root_change(self, _events: object) -> None:
        if not self._server_writing:
            self._server_root_touched = True

    def _take_back(self) -> None:
        """Rebuild the document without the update just applied (it was neither logged nor
        sent to anyone): from the newest snapshot and the updates logged since."""
        doc = new_doc()
        if self._base_state is not None:
            doc.apply_update(self._base_state)
        for update in self._recent:
            doc.apply_update(update)
        self.doc = doc
        self._full_state = None
        self._server_root_touched = False
        self._watch(doc)

    async def _publish(self, author_id: str, kind: EntryKind, exclude: Peer | None) -> None:
        """Log the change just made and send it to everyone else."""
        effective = self._changes[0] if len(self._changes) == 1 else merge_updates(*self._changes)
        self._record(effective, author_id, kind)
        await self._broadcast(encode_sync(SyncType.UPDATE, effective), exclude=exclude)

    def _record(self, update: bytes, author_id: str, kind: EntryKind) -> None:
        self._recent.append(update)
        self._since_snapshot += 1
        if self.clustered:  # numbered when committed; see own_numbered
            self._unnumbered += 1
            self._log.append(LogEntry(self.key, 0, now_us(), author_id, kind, update))
            return
        self.seq += 1
        self._log.append(LogEntry(self.key, self.seq, now_us(), author_id, kind, update))
        if self._snapshot_due():
            self.take_snapshot()

    def _snapshot_due(self) -> bool:
        return (
            self._since_snapshot >= self._snapshots.every_updates
            or time.monotonic() - self._last_snapshot_at >= self._snapshots.every_seconds
        )

    def _would_change(self, update: bytes) -> bool:
        try:
            if get_update(update, self.doc.get_state()) == EMPTY_UPDATE:
                return False  # nothing the document lacks (the usual read-only step 2)
        except ValueError as e:
            raise InvalidUpdate(f"update rejected by the CRDT: {e}") from e
        scratch = new_doc()
        scratch.apply_update(self.doc.get_update())
        changed: list[bool] = []
        scratch.observe(lambda _event: changed.append(True))
        try:
            scratch.apply_update(update)
        except ValueError as e:
            raise InvalidUpdate(f"update rejected by the CRDT: {e}") from e
        return bool(changed)

    async def _broadcast(self, message: bytes, exclude: Peer | None) -> None:
        # One message object, one awaited send per peer in a plain loop: the fastest fan-out
        # under ASGI (a task or gather per send costs more than the send itself).
        for peer in self.peers:
            if peer is exclude:
                continue
            try:
                await peer.send(message)
            except Exception:  # the peer's own receive loop notices and cleans up
                log.debug("send to a closing peer failed", extra={"room": self.id})


def _left_pending(update: bytes, state_vector: bytes) -> bool:
    """Whether some of ``update``'s items are not in a document whose state is
    ``state_vector`` after applying it: the CRDT keeps those back, waiting for what they
    depend on. (The part of the update the document does not cover starts with its number
    of clients with items; a delete set alone is not held back.)"""
    return get_update(update, state_vector)[0] != 0
