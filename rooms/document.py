"""The room document: its schema and how a new room's first state is made.

One Y.Doc per room with three root types:

* ``files``: Y.Map of file name to Y.Text, the workspace;
* ``meta``: Y.Map of room facts (language, kind, entry file, what it was seeded from);
* ``outputs``: Y.Array of execution records, written by the server only.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pycrdt import Array, Doc, Map, Text, TransactionEvent

from rooms.types import RoomInfo

DEFAULT_FILES = {"python": {"main.py": ""}}

# Root types only the server writes; an update from a client that touches them is refused.
SERVER_ROOTS = ("meta", "outputs")

RoomDoc = Doc[Any]


def new_doc() -> RoomDoc:
    """An empty document with the room schema's root types."""
    doc: RoomDoc = Doc()
    doc["files"] = Map()
    doc["meta"] = Map()
    doc["outputs"] = Array()
    return doc


def files_of(doc: RoomDoc) -> dict[str, str]:
    """Every file of the workspace as plain text."""
    files = doc.get("files", type=Map)
    return {name: str(text) for name, text in files.items()}


def load_doc(updates: list[bytes]) -> RoomDoc:
    doc = new_doc()
    for update in updates:
        doc.apply_update(update)
    return doc


def capture(doc: RoomDoc, change: Callable[[], None]) -> bytes:
    """Run ``change`` in one transaction on ``doc`` and return the update it produced."""
    captured: list[bytes] = []

    def on_change(event: TransactionEvent) -> None:
        captured.append(event.update)

    subscription = doc.observe(on_change)
    try:
        with doc.transaction(origin="system"):
            change()
    finally:
        doc.unobserve(subscription)
    return b"".join(captured[:1])


def initial_notes_update() -> bytes:
    """The first update of a room's private notes: one empty text that every interviewer's
    page binds to (two pages creating it at once would each make their own)."""
    doc: RoomDoc = Doc()
    doc["files"] = Map()
    notes = doc.get("files", type=Map)
    return capture(doc, lambda: notes.__setitem__("notes", Text()))


def initial_update(
    info: RoomInfo, files: dict[str, str], extra_meta: dict[str, Any] | None = None
) -> bytes:
    """The first update of a fresh room: its files and its metadata (plus ``extra_meta``, such
    as a task's prompt or a test's questions)."""
    doc = new_doc()
    files_map = doc.get("files", type=Map)
    meta = doc.get("meta", type=Map)

    def seed() -> None:
        for name, content in files.items():
            files_map[name] = Text(content)
        meta["language"] = info.language
        meta["kind"] = info.kind.value
        meta["entry"] = next(iter(files), "")
        for key, value in (extra_meta or {}).items():
            meta[key] = value

    return capture(doc, seed)


def seeded_marker_update(doc: RoomDoc, info: RoomInfo, source_seq: int) -> bytes:
    """The update that marks a copied history as the seeded state of a new room.

    ``meta.seeded_state`` holds the state vector at that moment, so "as submitted" can always
    be recovered from the history (the same document, before any update beyond it).
    """
    meta = doc.get("meta", type=Map)
    state_vector = base64.b64encode(doc.get_state()).decode()

    def mark() -> None:
        meta["kind"] = info.kind.value
        meta["language"] = info.language
        meta["seeded_from"] = info.seeded_from
        meta["seeded_seq"] = source_seq
        meta["seeded_state"] = state_vector

    return capture(doc, mark)
