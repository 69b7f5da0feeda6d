"""Cluster mode: this node's link to the other nodes through Redis (setting ``redis_url``).

PostgreSQL is the truth: every node commits the updates it accepts to the shared log, which
numbers them per document (``log_heads``). Redis only rings the bell: after a commit the node
publishes the committed entries on the document's channel, and the nodes with clients in that
room apply them in log order. Pub/sub delivers at most once, so a gap in the numbers, a lost
message or Redis being away is repaired from PostgreSQL (and a poll of the log heads every
second catches what no message announced). Awareness (cursors, selections) is ephemeral and
goes over the same channels only.

Presence across nodes: each node publishes the people connected to it per room (a key that
expires unless refreshed, so a dead node's people disappear) and emits the merged list with a
version number; clients keep the newest version.

Room ownership: one node at a time runs a room's kernel and holds its call (and takes its
snapshots), by a lease in Redis that its holder renews while it has the room loaded. A node
whose heartbeat key has expired has died: its leases go to the next node that asks. Requests
for the kernel (run, interrupt, restart, input) and the call (join, leave, signalling) made on
another node are forwarded to the owner over its own channel and answered over the
requester's (``on_owner``; ``services`` names the handlers).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from rooms.types import EntryKind, LogEntry, Participant, Role

log = logging.getLogger("clarityhire.cluster")

CLUSTER_DOWN = "this server cannot reach Redis, which links it to the others: try again shortly"
HEARTBEAT_S = 0.5
NODE_TTL_MS = 3000  # a node silent this long is dead: its leases can be taken
LEASE_TTL_MS = 10_000
PRESENCE_TTL_S = 15
PRESENCE_REFRESH_S = 5.0
FORWARD_TIMEOUT_S = 15.0
# How long a forwarded request waits for a dead owner's lease to become free (NODE_TTL_MS and
# a heartbeat).
NODE_DEATH_S = 3.5

RemoteEntries = Callable[[str, list[LogEntry]], Awaitable[None]]
RemoteAwareness = Callable[[str, bytes], Awaitable[None]]
# (room id, previous owner or None, new owner)
LeaseChanged = Callable[[str, str | None, str], Awaitable[None]]
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
BusHandler = Callable[[dict[str, Any]], Awaitable[None]]

# Take or renew a room's lease: free, held by this node, or held by a node whose heartbeat
# key is gone (it died) -> this node's; otherwise the holder's. Returns {owner, the dead holder
# it replaced or ''}.
_ACQUIRE = """
local owner = redis.call('GET', KEYS[1])
local replaced = ''
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 0 then
  replaced = owner
  owner = false
end
if not owner or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], replaced}
end
return {owner, replaced}
"""


def participant_json(who: Participant) -> dict[str, str]:
    """A participant as a forwarded request carries them."""
    return {"id": who.id, "name": who.name, "role": who.role.value}


def participant_from(data: dict[str, str]) -> Participant:
    return Participant(data["id"], data["name"], Role(data["role"]))


class OwnerUnreachable(Exception):
    """The node holding a room's lease did not take a forwarded request."""


class Cluster:
    """One node's Redis link: health, document channels, and presence."""

    def __init__(self, url: str, prefix: str, node_id: str) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id
        self.healthy = False
        self.on_entries: RemoteEntries | None = None
        self.on_awareness: RemoteAwareness | None = None
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None
        self.on_lease: LeaseChanged | None = None
        self.services: dict[str, Handler] = {}  # what forwarded requests may ask for
        self.on_bus: BusHandler | None = None
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._rooms: set[str] = set()  # rooms loaded here: their leases are renewed
        self.owners: dict[str, str] = {}  # the owner last seen, per room loaded here
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._channels: set[str] = {self._key("node", node_id, "inbox"), self._key("bus")}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._local_people: dict[str, list[dict[str, Any]]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._beat()
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="cluster-heartbeat"),
            asyncio.create_task(self._listen(), name="cluster-listen"),
            asyncio.create_task(self._refresh_presence(), name="cluster-presence"),
        ]

    async def close(self) -> None:
        for task in (*self._tasks, *self._sends):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._sends, return_exceptions=True)
        try:
            await self._redis.delete(self._key("node", self.node_id))
        except Exception:  # Redis may be the reason we stop
            pass
        await self._redis.aclose()

    def is_healthy(self) -> bool:
        return self.healthy

    def status(self) -> dict[str, Any]:
        owned = sum(1 for owner in self.owners.values() if owner == self.node_id)
        return {
            "node": self.node_id,
            "redis": "ok" if self.healthy else "unreachable",
            "rooms_owned": owned,
        }

    # -- documents -----------------------------------------------------------------------------

    def watch(self, key: str) -> None:
        """Receive the updates and awareness of a document this node has loaded."""
        self._channels.add(self._key("doc", key))
        if ":" not in key:  # a room's own document, not its notes: hold its lease
            self._rooms.add(key)
        self._changed.set()

    def unwatch(self, key: str) -> None:
        self._channels.discard(self._key("doc", key))
        self._rooms.discard(key)
        self.owners.pop(key, None)
        self._changed.set()

    def owns(self, room_id: str) -> bool:
        return self.owners.get(room_id) == self.node_id

    def send_awareness(self, key: str, frame: bytes) -> None:
        """Relay an awareness frame to the other nodes, without waiting."""
        self._spawn(self.publish_awareness(key, frame))

    async def publish_entries(self, entries: list[LogEntry]) -> None:
        """Announce committed entries (grouped per document) to the other nodes."""
        by_key: dict[str, list[list[Any]]] = {}
        for e in entries:
            by_key.setdefault(e.room_id, []).append(
                [e.seq, e.at_us, e.author, e.kind.value, base64.b64encode(e.update).decode()]
            )
        await self._publish_all(
            {
                self._key("doc", k): orjson.dumps({"n": self.node_id, "e": v})
                for k, v in by_key.items()
            }
        )

    async def publish_bus(self, message: dict[str, Any]) -> None:
        """A room event for every node (a round ended, a room was deleted)."""
        await self._publish_all({self._key("bus"): orjson.dumps({"n": self.node_id, **message})})

    async def publish_awareness(self, key: str, frame: bytes) -> None:
        message = orjson.dumps({"n": self.node_id, "a": base64.b64encode(frame).decode()})
        await self._publish_all({self._key("doc", key): message})

    async def _publish_all(self, messages: dict[str, bytes]) -> None:
        if not messages or not self.healthy:
            return  # the others catch up from the log (committed entries are never lost)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, message in messages.items():
                    pipe.publish(channel, message)
                await pipe.execute()
        except Exception as e:
            self._down(e)

    # -- room ownership ------------------------------------------------------------------------

    async def owner(self, room_id: str) -> str:
        """The node that runs a room's kernel: its lease holder, this node if there is none
        or the holder has died."""
        if not self.healthy:
            raise OwnerUnreachable("this node cannot reach Redis to find the room's owner")
        try:
            held, replaced = await self._acquire(
                keys=[self._key("lease", room_id)],
                args=[self.node_id, LEASE_TTL_MS, self._key("node", "")],
            )
            owner = bytes(held).decode()
        except Exception as e:
            self._down(e)
            raise OwnerUnreachable("this node cannot reach Redis to find the room's owner") from e
        self._seen_owner(room_id, owner, bytes(replaced).decode() or None)
        return owner

    async def known_owner(self, room_id: str) -> str:
        """The room's owner as the heartbeat last renewed it (every 0.5 s) when this node holds
        the room, so that a request per signalling message costs no Redis call; else ``owner``."""
        if self.healthy and room_id in self._rooms and room_id in self.owners:
            return self.owners[room_id]
        return await self.owner(room_id)

    async def on_owner(self, room_id: str, service: str, request: dict[str, Any]) -> dict[str, Any]:
        """Have the room's owner handle a request (this node, if it is the owner) and return
        its answer. An owner that does not answer has died if its heartbeat stops: wait for
        that, then the lease comes here or goes to whoever asked first."""
        owner = await self.known_owner(room_id)
        if owner != self.node_id:
            try:
                return await self.forward(owner, service, request)
            except OwnerUnreachable:
                await asyncio.sleep(NODE_DEATH_S)
                owner = await self.owner(room_id)
        if owner == self.node_id:
            return await self.services[service](request)
        return await self.forward(owner, service, request)

    async def dead_nodes(self, nodes: set[str]) -> set[str]:
        """Which of ``nodes`` have died (their heartbeat key expired); none while this node
        cannot reach Redis to tell."""
        names = sorted(nodes - {self.node_id})
        if not names or not self.healthy:
            return set()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.exists(self._key("node", name))
                alive = await pipe.execute()
        except Exception as e:
            self._down(e)
            return set()
        return {name for name, up in zip(names, alive, strict=True) if not up}

    async def forward(self, node: str, service: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request for one of its ``services`` to another node; returns its answer."""
        request_id = secrets.token_hex(8)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        message = orjson.dumps(
            {"id": request_id, "from": self.node_id, "service": service, "request": request}
        )
        try:
            try:
                receivers = await self._redis.publish(self._key("node", node, "inbox"), message)
            except Exception as e:
                self._down(e)
                raise OwnerUnreachable("this node cannot reach Redis") from e
            if receivers == 0:
                raise OwnerUnreachable(f"node {node} is not listening")
            try:
                return await asyncio.wait_for(reply, FORWARD_TIMEOUT_S)
            except TimeoutError as e:
                raise OwnerUnreachable(f"node {node} did not answer") from e
        finally:
            self._replies.pop(request_id, None)

    def _seen_owner(self, room_id: str, owner: str, replaced: str | None) -> None:
        # The dead holder this node just replaced, else the owner it saw last (if it holds
        # the room).
        previous = replaced or self.owners.get(room_id)
        if room_id in self._rooms:
            self.owners[room_id] = owner
        if previous != owner and self.on_lease is not None:
            # Not on the heartbeat's task: a slow handler must not make this node look dead.
            self._spawn(self.on_lease(room_id, previous, owner))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("cluster work in the background failed")

        task = asyncio.create_task(run())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _renew_leases(self) -> None:
        for room_id in list(self._rooms):
            try:
                await self.owner(room_id)
            except OwnerUnreachable:
                return

    # -- presence ------------------------------------------------------------------------------

    async def presence(
        self, room_id: str, local: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], int]:
        """Publish this node's people in a room; returns everyone's (merged by participant)
        and a version that orders presence messages from different nodes."""
        if local:
            self._local_people[room_id] = local
        else:
            self._local_people.pop(room_id, None)
        if not self.healthy:
            return local, 0
        mine = self._key("presence", room_id, self.node_id)
        nodes = self._key("presence-nodes", room_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if local:
                    pipe.set(mine, orjson.dumps(local), ex=PRESENCE_TTL_S)
                    pipe.sadd(nodes, self.node_id)
                    pipe.expire(nodes, 86400)
                else:
                    pipe.delete(mine)
                pipe.incr(self._key("presence-version", room_id))
                pipe.smembers(nodes)
                *_, version, members = await pipe.execute()
            names = sorted(m.decode() for m in members)
            values = await self._redis.mget([self._key("presence", room_id, n) for n in names])
        except Exception as e:
            self._down(e)
            return local, 0
        merged: dict[str, dict[str, Any]] = {}
        for value in values:
            for person in orjson.loads(value) if value else []:
                known = merged.get(person["id"])
                if known is None:
                    merged[person["id"]] = dict(person)
                else:
                    known["connections"] += person["connections"]
                    known["since"] = min(known["since"], person["since"])
                    known["media"] = known["media"] or person["media"]
        return sorted(merged.values(), key=lambda p: p["since"]), int(version)

    # -- internals -----------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _down(self, error: BaseException) -> None:
        if self.healthy:
            log.error("Redis is unreachable", extra={"error": f"{type(error).__name__}: {error}"})
        self.healthy = False

    async def _beat(self) -> None:
        try:
            await self._redis.set(self._key("node", self.node_id), "1", px=NODE_TTL_MS)
        except Exception as e:
            self._down(e)
            return
        if not self.healthy:
            log.info("Redis is reachable", extra={"node": self.node_id})
            self.healthy = True
            self._changed.set()  # resubscribe, then catch up

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._beat()
            if self.healthy:
                await self._renew_leases()

    async def _refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_REFRESH_S)
            if not self.healthy:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for room_id, people in self._local_people.items():
                        pipe.set(self._key("presence", room_id, self.node_id),
                                 orjson.dumps(people), ex=PRESENCE_TTL_S)  # fmt: skip
                        pipe.sadd(self._key("presence-nodes", room_id), self.node_id)
                    await pipe.execute()
            except Exception as e:
                self._down(e)

    async def _listen(self) -> None:
        """Receive document messages; after any failure, subscribe afresh and catch up."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._serve(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._down(e)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(HEARTBEAT_S)

    async def _serve(self, pubsub: Any) -> None:
        subscribed: set[str] = set()
        caught_up = False
        while True:
            if self._changed.is_set() or not caught_up:
                self._changed.clear()
                wanted = set(self._channels)
                if wanted - subscribed:
                    await pubsub.subscribe(*(wanted - subscribed))
                if subscribed - wanted:
                    await pubsub.unsubscribe(*(subscribed - wanted))
                subscribed = wanted
                if not caught_up and self.healthy and self.on_reconnect is not None:
                    await self.on_reconnect()  # what was committed while we were not listening
                    caught_up = True
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is None:
                continue
            await self._dispatch(message["channel"].decode(), message["data"])

    async def _dispatch(self, channel: str, data: bytes) -> None:
        body = orjson.loads(data)
        if channel == self._key("node", self.node_id, "inbox"):
            if "reply" in body:
                reply = self._replies.get(body["reply"])
                if reply is not None and not reply.done():
                    reply.set_result(body["answer"])
            else:
                self._spawn(self._answer(body))
            return
        if body.get("n") == self.node_id:
            return
        if channel == self._key("bus"):
            if self.on_bus is not None:
                try:
                    await self.on_bus(body)
                except Exception:
                    log.exception("a room event from another node failed", extra=body)
            return
        doc_prefix = self._key("doc", "")
        if not channel.startswith(doc_prefix):
            return
        key = channel[len(doc_prefix) :]
        try:
            if "e" in body and self.on_entries is not None:
                entries = [
                    LogEntry(key, seq, at, author, EntryKind(kind), base64.b64decode(update))
                    for seq, at, author, kind, update in body["e"]
                ]
                await self.on_entries(key, entries)
            elif "a" in body and self.on_awareness is not None:
                await self.on_awareness(key, base64.b64decode(body["a"]))
        except Exception:
            log.exception("a message from another node could not be applied", extra={"doc": key})

    async def _answer(self, body: dict[str, Any]) -> None:
        """Handle a request forwarded by another node and send back the answer."""
        try:
            answer = await self.services[body["service"]](body["request"])
        except Exception as e:
            log.exception("a forwarded request failed")
            answer = {"ok": False, "reason": f"the room's node failed: {type(e).__name__}"}
        message = orjson.dumps({"reply": body["id"], "answer": answer})
        await self._publish_all({self._key("node", body["from"], "inbox"): message})
