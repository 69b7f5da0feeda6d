"""A y-websocket client on pycrdt, as a browser's Yjs provider behaves.

On every (re)connect it sends sync step 1 and answers the server's step 1 with a step 2, so
edits made while offline reach the server; local edits are sent as updates while connected.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from pycrdt import Doc, Map, Text, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rooms.protocol import (
    AwarenessEntry,
    MessageType,
    SyncType,
    encode_awareness,
    encode_sync,
    parse_awareness,
    parse_message,
)


class YClient:
    def __init__(self, url: str, file: str = "main.py") -> None:
        self.url = url
        self.file = file
        self.doc: Doc = Doc()
        self.files = self.doc.get("files", type=Map)
        self.synced = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.awareness: dict[int, bytes] = {}
        self.frames: list[bytes] = []  # every message received, as sent
        self.denials: list[str] = []  # reasons of "permission denied" messages
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._remote = False
        self._reader: asyncio.Task[None] | None = None
        self._outbox: list[bytes] = []
        self.doc.observe(self._on_change)

    # -- connection --------------------------------------------------------------------------

    async def connect(self, wait_synced: bool = True) -> YClient:
        self.synced.clear()
        self.closed.clear()
        self.ws = await connect(self.url, max_size=None, compression=None)
        self._reader = asyncio.create_task(self._read(self.ws))
        try:
            await self.ws.send(encode_sync(SyncType.STEP1, self.doc.get_state()))
        except ConnectionClosed:
            pass  # refused at once: close code and reason are read by _read
        if wait_synced:
            await asyncio.wait_for(self._synced_or_closed(), 10)
        return self

    async def _synced_or_closed(self) -> None:
        _done, pending = await asyncio.wait(
            [asyncio.ensure_future(self.synced.wait()), asyncio.ensure_future(self.closed.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in pending:
            task.cancel()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def wait_closed(self, timeout: float = 10) -> tuple[int | None, str | None]:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code, self.close_reason

    async def reconnect_until(self, deadline: float) -> None:
        """Reconnect with back-off until it works (the server may be restarting)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.connect()
                if self.synced.is_set():
                    return
            except (OSError, ConnectionClosed, TimeoutError):
                pass
            if loop.time() > deadline:
                raise TimeoutError("could not reconnect")
            await asyncio.sleep(0.2)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.closed.is_set()

    # -- editing -----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        value = self.files.get(self.file)
        return str(value) if value is not None else ""

    async def type(self, chars: str, at: int | None = None) -> None:
        """Insert ``chars`` (at the end by default) and send the update if online."""
        text = self.files[self.file]
        assert isinstance(text, Text)
        text.insert(len(text) if at is None else at, chars)
        await self.flush()

    async def send_raw(self, data: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def send_awareness(self, state: dict[str, object] | None, clock: int = 1) -> None:
        entry = AwarenessEntry(self.doc.client_id, clock, orjson.dumps(state))
        await self.send_raw(encode_awareness([entry]))

    async def flush(self) -> None:
        """Send edits made since the last flush (typing is sent as it happens when online)."""
        while self._outbox and self.connected:
            message = self._outbox.pop(0)
            try:
                assert self.ws is not None
                await self.ws.send(message)
            except ConnectionClosed:
                return

    # -- internals ---------------------------------------------------------------------------

    def _on_change(self, event: TransactionEvent) -> None:
        if not self._remote and self.connected:
            self._outbox.append(encode_sync(SyncType.UPDATE, event.update))

    def _apply(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                assert isinstance(message, bytes)
                self.frames.append(message)
                msg_type, sync_type, payload = parse_message(message)
                if msg_type == MessageType.SYNC:
                    if sync_type == SyncType.STEP1:
                        await ws.send(encode_sync(SyncType.STEP2, self.doc.get_update(payload)))
                    else:
                        self._apply(payload)
                        if sync_type == SyncType.STEP2:
                            self.synced.set()
                elif msg_type == MessageType.AUTH:
                    self.denials.append(payload.decode())
                elif msg_type == MessageType.AWARENESS:
                    for entry in parse_awareness(payload):
                        if entry.removed:
                            self.awareness.pop(entry.client_id, None)
                        else:
                            self.awareness[entry.client_id] = entry.state_json
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason
            self.closed.set()
