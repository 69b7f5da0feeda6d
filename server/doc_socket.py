"""``WS /rooms/{room_id}/doc`` and ``/notes``: the y-websocket endpoints of a room.

A raw ASGI endpoint (no per-message wrapper objects) because it is the hot path: every
keystroke of every participant passes through ``_handle``. Every error a client can cause
closes only that connection, with the code and reason of its ``RoomError``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from rooms.errors import (
    ClusterUnavailable,
    DocumentFrozen,
    Forbidden,
    MessageTooLarge,
    ProtocolError,
    RoomError,
    UnsupportedData,
)
from rooms.protocol import (
    MessageType,
    SyncType,
    encode_permission_denied,
    parse_awareness,
    parse_message,
)
from rooms.registry import DocName, RoomRegistry
from rooms.room import Room
from rooms.types import EntryKind, Participant, Role, RoomInfo
from server.cluster import CLUSTER_DOWN
from server.tokens import TokenSigner

log = logging.getLogger("clarityhire.ws")

# Who may open a room's private notes: interviewers write them, reviewers read them.
NOTES_ROLES = (Role.INTERVIEWER, Role.REVIEWER)


class SocketPeer:
    """A room peer backed by one ASGI WebSocket connection."""

    __slots__ = ("_send", "awareness_ids", "participant")

    def __init__(self, participant: Participant, send: Send) -> None:
        self.participant = participant
        self.awareness_ids: set[int] = set()
        self._send = send

    async def send(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int, reason: str) -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class DocSocket:
    def __init__(
        self,
        registry: RoomRegistry,
        signer: TokenSigner,
        max_message_bytes: int,
        on_arrival: Callable[[RoomInfo, Participant], Awaitable[object]],
        cluster_healthy: Callable[[], bool] | None = None,
    ):
        self.registry = registry
        # Cluster mode: whether this node can reach Redis, without which a newcomer's edits
        # would reach the others only by the log's poll; new joins wait for it.
        self.cluster_healthy = cluster_healthy
        self.signer = signer
        self.max_message_bytes = max_message_bytes
        # Tells the round keeper: a solo test's clock starts at the candidate's first arrival,
        # on whichever channel it happens.
        self.on_arrival = on_arrival

    async def __call__(
        self, room_id: str, doc: DocName, scope: Scope, receive: Receive, send: Send
    ) -> None:
        token = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        if (await receive())["type"] != "websocket.connect":
            return
        # Accept first, then refuse with a close code: a browser cannot read the status of a
        # refused handshake, but it can read a close code and reason.
        await send({"type": "websocket.accept"})
        try:
            claims = self.signer.verify(token, room_id)
            if doc == "notes" and claims.participant.role not in NOTES_ROLES:
                raise Forbidden("the notes are private to the interviewers")
            if self.cluster_healthy is not None and not self.cluster_healthy():
                raise ClusterUnavailable(CLUSTER_DOWN)
            room = await self.registry.open(room_id, doc, fresh=True)
            if doc == "main":
                await self.on_arrival(room.info, claims.participant)
        except RoomError as e:
            await _close(send, e, room_id, None)
            return
        peer = SocketPeer(claims.participant, send)
        try:
            for message in room.join(peer):
                await peer.send(message)
            await self._serve(room, peer, receive)
        except RoomError as e:
            await _close(send, e, room_id, peer.participant)
        finally:
            await room.leave(peer)
            self.registry.release(room)

    async def _serve(self, room: Room, peer: SocketPeer, receive: Receive) -> None:
        limit = self.max_message_bytes
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                raise UnsupportedData("text frames are not part of the y-websocket protocol")
            if len(data) > limit:
                raise MessageTooLarge(f"message of {len(data)} bytes exceeds the {limit} limit")
            await _handle(room, peer, data)


async def _handle(room: Room, peer: SocketPeer, data: bytes) -> None:
    msg_type, sync_type, payload = parse_message(data)
    if msg_type == MessageType.SYNC:
        if sync_type == SyncType.STEP1:
            await peer.send(room.sync_reply(payload))
        else:
            kind = EntryKind.UPDATE if sync_type == SyncType.UPDATE else EntryKind.SYNC
            try:
                await room.apply_update(payload, peer.participant, kind, peer)
            except DocumentFrozen as e:
                # Dropped, not fatal: closing would only make the provider reconnect and resend.
                await peer.send(encode_permission_denied(e.reason))
    elif msg_type == MessageType.AWARENESS:
        await room.apply_awareness(peer, data, parse_awareness(payload))
    elif msg_type == MessageType.AUTH:
        raise ProtocolError("auth messages only go from the server to clients")
    else:  # query awareness
        frame = room.awareness_frame()
        if frame is not None:
            await peer.send(frame)


async def _close(send: Send, error: RoomError, room_id: str, who: Participant | None) -> None:
    log.info(
        "connection refused",
        extra={
            "room": room_id,
            "participant": who.id if who else None,
            "code": error.close_code,
            "reason": error.reason,
        },
    )
    try:
        await send({"type": "websocket.close", "code": error.close_code, "reason": error.reason})
    except Exception:  # already gone; nothing left to tell it
        pass
