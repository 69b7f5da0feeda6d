"""A room's recording, read back: the timeline, the state at any moment, diffs and provenance.

Everything comes from the durable store: the update log (every accepted document update with
its author and server time), the snapshots taken along the way, and the control-plane events
(joins, chat, runs, round changes, integrity signals, media segments). Times at this boundary
are milliseconds since the Unix epoch; the store keeps microseconds.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from pycrdt import Array, Map, Text

from rooms.document import files_of, new_doc
from rooms.errors import BadRequest
from rooms.store import SqlStore
from rooms.types import EntryKind, LogEntry, TimelineEvent

MAX_TIME_MS = 253_402_300_799_999  # the last millisecond of year 9999
PAGE_LIMIT = 5000
# An insertion this long in one keystroke-level update, with no paste signal, is counted as a
# paste all the same (typing arrives a character or two at a time). Updates that carry work
# typed while offline (kind "sync") are never counted: they are long by nature.
UNREPORTED_PASTE_CHARS = 40
PASTE_SIGNAL_WINDOW_US = 5_000_000


def parse_time_ms(name: str, raw: str | None, default: int | None = None) -> int:
    """A query parameter holding a time in ms since the epoch; 400 when it is not one."""
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"'{name}' is required: a time in milliseconds since the Unix epoch")
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise BadRequest(f"'{name}' must be an integer time in milliseconds, got {raw!r}") from e
    if not 0 <= value <= MAX_TIME_MS:
        raise BadRequest(f"'{name}' is out of range (0 to {MAX_TIME_MS} ms)")
    return value


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a timeline page ended: the last update (by seq) and event (by time, id) given."""

    seq: int = 0
    event_at_us: int = -1
    event_id: int = 0

    def encode(self) -> str:
        raw = orjson.dumps([self.seq, self.event_at_us, self.event_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> Cursor:
        try:
            values = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            seq, at_us, event_id = values
            if not all(isinstance(v, int) for v in values) or seq < 0 or event_id < 0:
                raise ValueError
        except (ValueError, TypeError) as e:
            raise BadRequest("unknown cursor: use the 'next' value of a timeline page") from e
        return Cursor(seq, at_us, event_id)


@dataclass(slots=True)
class _Char:
    author: str
    at_us: int
    origin: str
    reported: bool = False  # a paste that the author's paste signal accounts for


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to one file's text within one logged update."""

    at_us: int
    author: str
    kind: EntryKind
    file: str
    inserted: str
    deleted: int
    origin: str  # of the inserted text: seed, typed or paste
    reported: bool  # a paste that a paste signal accounts for


@dataclass(slots=True)
class Attribution:
    """Who put each character of each file where it is, and every edit, as the history is
    replayed."""

    files: dict[str, list[_Char]] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # the files at the end of the replay


class Timeline:
    """The recording of rooms, for reviewers and replay."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def page(
        self, room_id: str, from_ms: int, to_ms: int, cursor: Cursor | None, limit: int
    ) -> dict[str, Any]:
        """Updates and events with ``from_ms <= at <= to_ms`` in time order, ``limit`` at a
        time; ``next`` is the cursor of the following page (None at the end)."""
        if to_ms < from_ms:
            raise BadRequest("'to' is before 'from'")
        cursor = cursor or Cursor()
        start_us, end_us = from_ms * 1000, to_ms * 1000 + 999
        updates = await self.store.updates_between(room_id, start_us, end_us, cursor.seq, limit)
        events = await self.store.events_between(
            room_id, start_us, end_us, (cursor.event_at_us, cursor.event_id), limit
        )
        merged: list[tuple[int, int, int, Any]] = [(u.at_us, 0, u.seq, u) for u in updates]
        merged += [(e.at_us, 1, event_id, e) for event_id, e in events]
        merged.sort(key=lambda item: item[:3])
        taken = merged[:limit]
        seq, event_at, event_id = cursor.seq, cursor.event_at_us, cursor.event_id
        items = []
        for at_us, source, key, item in taken:
            if source == 0:
                seq = key
                items.append(_update_json(item))
            else:
                event_at, event_id = at_us, key
                items.append(_event_json(item))
        more = len(merged) > limit or len(updates) == limit or len(events) == limit
        following = Cursor(seq, event_at, event_id).encode() if more and taken else None
        return {"items": items, "next": following}

    async def participants(self, room_id: str) -> dict[str, dict[str, str]]:
        """Names and roles of everyone who joined (from the join events)."""
        joins = await self.store.events(room_id, ("join",), 100_000)
        return {e.author: {"name": e.data["name"], "role": e.data["role"]} for e in joins}

    async def state_at(self, room_id: str, at_ms: int) -> dict[str, Any]:
        """The files and run outputs as they were at ``at_ms`` (the seed state before the room
        existed), from the newest snapshot at or before then plus the updates after it."""
        at_us = at_ms * 1000 + 999
        history = await self.store.history_at(room_id, at_us)
        snapshot, entries = history.snapshot, history.tail
        after = snapshot.seq if snapshot else 0
        if snapshot is None and not entries:
            entries = await self.store.updates_until(room_id, 0, None, limit=1)
        doc = new_doc()
        if snapshot is not None:
            doc.apply_update(snapshot.state)
        for entry in entries:
            doc.apply_update(entry.update)
        seq = entries[-1].seq if entries else after
        outputs = doc.get("outputs", type=Array).to_py() or []
        return {"at": at_ms, "seq": seq, "files": files_of(doc), "outputs": outputs}

    async def diff(self, room_id: str, from_ms: int, to_ms: int) -> dict[str, Any]:
        """A unified diff per file that changed between two moments (added and deleted files
        diff against nothing)."""
        if to_ms < from_ms:
            raise BadRequest("'to' is before 'from'")
        before = (await self.state_at(room_id, from_ms))["files"]
        after = (await self.state_at(room_id, to_ms))["files"]
        diffs = {}
        for name in sorted(set(before) | set(after)):
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            lines = difflib.unified_diff(
                (old or "").splitlines(keepends=True),
                (new or "").splitlines(keepends=True),
                fromfile=f"a/{name}" if old is not None else "/dev/null",
                tofile=f"b/{name}" if new is not None else "/dev/null",
            )
            diffs[name] = "".join(lines)
        return {"from": from_ms, "to": to_ms, "files": diffs}

    async def provenance(self, room_id: str, at_ms: int) -> dict[str, Any]:
        """For each file at ``at_ms``: runs of characters with the same author and origin
        (``seed``, ``typed`` or ``paste``), with when their first and last characters were
        inserted. Replays the whole history up to then, watching every text change."""
        at_us = at_ms * 1000 + 999
        entries = await self.store.updates_until(room_id, 0, at_us)
        pastes = await self.store.events(room_id, ("signal.paste",), 100_000)
        names = await self.participants(room_id)
        # Seconds of CPU for a long session: off the event loop, which serves every room.
        attribution = await asyncio.to_thread(replay_with_attribution, entries, pastes)
        files = {}
        for name, chars in sorted(attribution.files.items()):
            files[name] = [_run_json(run, names) for run in _runs(chars)]
        return {"at": at_ms, "files": files, "participants": names}


def replay_with_attribution(entries: list[LogEntry], pastes: list[TimelineEvent]) -> Attribution:
    """Replay a room's log, watching every text change: who wrote each character, how it
    arrived, and the list of edits."""
    doc = new_doc()
    files = doc.get("files", type=Map)
    result = Attribution()
    current: list[LogEntry] = []

    def on_change(events: list[Any]) -> None:
        entry = current[0]
        for event in events:
            if not event.path:  # files added, renamed, replaced or removed
                removed = {}
                for name, change in event.keys.items():
                    if change["action"] in ("delete", "update"):
                        removed[len(result.files.get(name, []))] = result.files.pop(name, [])
                for name, change in event.keys.items():
                    if change["action"] == "delete":
                        continue
                    text = files[name]
                    content = str(text) if isinstance(text, Text) else ""
                    if content and len(content) in removed:  # a rename keeps who wrote what
                        result.files[name] = removed.pop(len(content))
                        continue
                    origin, reported = _origin(entry, content, name, pastes)
                    char = _Char(entry.author, entry.at_us, origin, reported)
                    result.files[name] = [char] * len(content)
                    if content:
                        result.edits.append(
                            Edit(entry.at_us, entry.author, entry.kind, name, content, 0, origin,
                                 reported)
                        )  # fmt: skip
                continue
            name = event.path[0]
            chars = result.files.setdefault(name, [])
            position = 0
            for op in event.delta:
                if "retain" in op:
                    position += op["retain"]
                elif "delete" in op:
                    del chars[position : position + op["delete"]]
                    result.edits.append(
                        Edit(entry.at_us, entry.author, entry.kind, name, "", op["delete"],
                             "typed", False)
                    )  # fmt: skip
                elif "insert" in op:
                    inserted = op["insert"] if isinstance(op["insert"], str) else ""
                    origin, reported = _origin(entry, inserted, name, pastes)
                    char = _Char(entry.author, entry.at_us, origin, reported)
                    chars[position:position] = [char] * len(inserted)
                    position += len(inserted)
                    result.edits.append(
                        Edit(entry.at_us, entry.author, entry.kind, name, inserted, 0, origin,
                             reported)
                    )  # fmt: skip

    subscription = files.observe_deep(on_change)
    try:
        for entry in entries:
            current[:] = [entry]
            doc.apply_update(entry.update)
    finally:
        files.unobserve(subscription)
    result.texts = files_of(doc)
    return result


def _origin(
    entry: LogEntry, inserted: str, file: str, pastes: list[TimelineEvent]
) -> tuple[str, bool]:
    """How text arrived (seed, typed or paste), and whether a paste signal reported it."""
    if entry.kind == EntryKind.SEED or entry.seq == 1:
        return "seed", False
    if entry.kind == EntryKind.UPDATE and inserted:
        digest = hashlib.sha256(inserted.encode()).hexdigest()
        for signal in pastes:
            if (
                signal.author == entry.author
                and abs(signal.at_us - entry.at_us) <= PASTE_SIGNAL_WINDOW_US
                and signal.data.get("length") == len(inserted)
                and digest.startswith(str(signal.data.get("hash", "")))
                and signal.data.get("file", file) == file
            ):
                return "paste", True
        if len(inserted) >= UNREPORTED_PASTE_CHARS:
            return "paste", False
    return "typed", False


def _runs(chars: list[_Char]) -> list[tuple[int, int, _Char, int]]:
    """(start, length, first char, last insertion time) of each maximal stretch of
    characters with the same author and origin."""
    runs: list[tuple[int, int, _Char, int]] = []
    for index, char in enumerate(chars):
        if runs:
            start, length, first, last_at = runs[-1]
            if first.author == char.author and first.origin == char.origin:
                runs[-1] = (start, length + 1, first, max(last_at, char.at_us))
                continue
        runs.append((index, 1, char, char.at_us))
    return runs


def _run_json(run: tuple[int, int, _Char, int], names: dict[str, dict[str, str]]) -> dict[str, Any]:
    start, length, first, last_at = run
    return {
        "start": start,
        "length": length,
        "author": first.author,
        "name": names.get(first.author, {}).get("name", first.author),
        "origin": first.origin,
        "first_at": first.at_us // 1000,
        "last_at": last_at // 1000,
    }


def _update_json(entry: LogEntry) -> dict[str, Any]:
    return {
        "type": "update",
        "at": entry.at_us // 1000,
        "author": entry.author,
        "seq": entry.seq,
        "kind": entry.kind.value,
        "update": base64.b64encode(entry.update).decode(),
    }


def _event_json(event: TimelineEvent) -> dict[str, Any]:
    at = event.at_us // 1000
    return {"type": event.type, "at": at, "author": event.author, "data": event.data}
