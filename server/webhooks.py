"""Webhooks: the funnel tells a company's own systems (an ATS) when a stage is completed or
scored. Each delivery is a JSON POST signed with HMAC-SHA256 of its body
(``X-ClarityHire-Signature: sha256=<hex>``), retried with exponential backoff until the
receiver answers 2xx or the attempts run out. Deliveries live in memory: a restart drops the
ones still being retried (they are logged).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

import httpx
import orjson

log = logging.getLogger("clarityhire.webhooks")


def signature(secret: str, body: bytes) -> str:
    """The value of ``X-ClarityHire-Signature`` for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, url: str, secret: str, attempts: int, backoff_s: float) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Deliver ``event`` in the background (nothing happens when no URL is set)."""
        if not self.url:
            return
        delivery = {"id": "dlv_" + secrets.token_hex(8), "event": event,
                    "at": int(time.time() * 1000), "data": data}  # fmt: skip
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _deliver(self, delivery: dict[str, Any]) -> None:
        body = orjson.dumps(delivery)
        headers = {
            "content-type": "application/json",
            "x-clarityhire-event": delivery["event"],
            "x-clarityhire-delivery": delivery["id"],
        }
        if self.secret:
            headers["x-clarityhire-signature"] = signature(self.secret, body)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    return
                problem = f"status {response.status_code}"
            except httpx.HTTPError as e:
                problem = str(e) or type(e).__name__
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        log.warning(
            "webhook not delivered",
            extra={"delivery": delivery["id"], "event": delivery["event"], "reason": problem},
        )
