"""Execution records in the room document's ``outputs`` array, written by the server only.

Each record is a Y.Map: ``id``, ``author``, ``author_name``, ``file``, ``code_sha256``,
``started_at``, ``ended_at`` (ms), ``status`` (``running``, ``ok``, ``error``,
``interrupted``, ``timeout``, ``killed``), ``note`` (why a run was stopped or cut), and
``outputs``: a Y.Array of Jupyter-like items (``stream``, ``display_data``, ``execute_result``,
``error``). Every change is a normal document update: synced to everyone, logged, replayable.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Map

from rooms.registry import RoomRegistry


class RoomOutputs:
    """The ``OutputSink`` of one room's kernel."""

    def __init__(self, registry: RoomRegistry, room_id: str) -> None:
        self.registry = registry
        self.room_id = room_id

    async def begin(self, record: dict[str, Any]) -> None:
        def add_record(outputs: Array[Any]) -> None:
            outputs.append(Map({**record, "outputs": Array()}))

        await self._change(add_record)

    async def add(self, run_id: str, items: list[dict[str, Any]]) -> None:
        def extend(outputs: Array[Any]) -> None:
            record = _find(outputs, run_id)
            stream: Array[Any] = record["outputs"]
            for item in items:
                stream.append(item)

        await self._change(extend)

    async def finish(self, run_id: str, fields: dict[str, Any]) -> None:
        def close(outputs: Array[Any]) -> None:
            record = _find(outputs, run_id)
            for key, value in fields.items():
                record[key] = value

        await self._change(close)

    async def _change(self, change: Any) -> None:
        # Open the room for each change: a run can outlast every connection, and the room
        # document may have been evicted and reloaded in between.
        room = await self.registry.open(self.room_id)
        try:
            await room.apply_system_change(lambda: change(room.doc.get("outputs", type=Array)))
        finally:
            self.registry.release(room)


def _find(outputs: Array[Any], run_id: str) -> Map[Any]:
    for index in range(len(outputs) - 1, -1, -1):
        record = outputs[index]
        if isinstance(record, Map) and record.get("id") == run_id:
            return record
    raise KeyError(f"no execution record {run_id}")
