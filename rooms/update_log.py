"""The group-commit writer of the durable update log.

Rooms append entries without waiting; one writer task per store gathers everything appended
within a short window and commits it in one transaction, so a busy server does not pay a
transaction per keystroke. Callers that need durability (eviction, seeding, shutdown) await
``flush()``, which resolves once everything appended before it is committed. ``stop()`` drains
before it cancels, so no write in flight is lost. A failing store is retried with back-off and
nothing queued is dropped.

In cluster mode (``numbered=True``) the store numbers the entries as it commits them, after
whatever other nodes committed, and ``on_committed`` hears of them numbered (to tell the
rooms and the other nodes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from rooms.store import Store
from rooms.types import LogEntry, Snapshot

log = logging.getLogger("clarityhire.log")


class UpdateLog:
    def __init__(self, store: Store, window_s: float, numbered: bool = False) -> None:
        self.store = store
        self.window_s = window_s
        self.numbered = numbered
        self.on_committed: Callable[[list[LogEntry]], Awaitable[None]] | None = None
        self._entries: list[LogEntry] = []
        self._snapshots: list[Snapshot] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0  # entries and snapshots in the transaction being committed
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        """Entries and snapshots accepted but not yet committed."""
        return len(self._entries) + len(self._snapshots) + self._in_flight

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="update-log-writer")

    def append(self, entry: LogEntry) -> None:
        self._entries.append(entry)
        self._wakeup.set()

    def add_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshots.append(snapshot)
        self._wakeup.set()

    async def flush(self) -> None:
        """Return once everything appended so far is committed."""
        if not (self._entries or self._snapshots or self._in_flight):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wakeup.set()
        await waiter

    async def stop(self) -> None:
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._waiters and self.window_s > 0:
                # Let the updates of the next few milliseconds join this transaction.
                await asyncio.sleep(self.window_s)
            self._wakeup.clear()
            entries, self._entries = self._entries, []
            snapshots, self._snapshots = self._snapshots, []
            waiters, self._waiters = self._waiters, []
            self._in_flight = len(entries) + len(snapshots)
            committed = await self._commit(entries, snapshots)
            if self.on_committed is not None and committed:
                try:
                    await self.on_committed(committed)
                except Exception:  # they are committed: the others catch up from the store
                    log.exception("telling of committed entries failed")
            self._in_flight = 0
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _commit(self, entries: list[LogEntry], snapshots: list[Snapshot]) -> list[LogEntry]:
        delay = 0.05
        while True:
            try:
                if self.numbered:
                    entries = await self.store.append_numbered(entries, snapshots)
                else:
                    await self.store.append(entries, snapshots)
                self.last_error = None
                return entries
            except Exception as e:  # keep the batch and retry: dropping it would lose edits
                self.last_error = f"{type(e).__name__}: {e}"
                log.error(
                    "log commit failed; retrying",
                    extra={"entries": len(entries), "error": self.last_error},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
