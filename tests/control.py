"""A python-socketio client of the control plane that keeps every event it receives."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import socketio


class ControlClient:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: defaultdict[str, list[Any]] = defaultdict(list)
        self.sio.on("*", self._record)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events[event].append(data)

    async def connect(self) -> ControlClient:
        await self.sio.connect(
            self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=10
        )
        await self.wait_for("welcome")
        return self

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=10)

    async def emit(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data)

    async def wait_for(self, event: str, count: int = 1, timeout: float = 10) -> list[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.events[event]) < count:
            if loop.time() > deadline:
                raise AssertionError(f"no {event!r} event (have {dict(self.events)})")
            await asyncio.sleep(0.02)
        return self.events[event]

    @property
    def welcome(self) -> dict[str, Any]:
        return self.events["welcome"][0]  # type: ignore[no-any-return]

    def presence(self) -> list[dict[str, Any]]:
        """The newest presence list (in a cluster, the one of the highest version: nodes send
        theirs in whatever order Redis delivers them)."""
        newest = self.events["presence"][0]
        for event in self.events["presence"]:
            if event.get("version", 0) >= newest.get("version", 0):
                newest = event
        return newest["participants"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.sio.disconnect()
