"""The control plane: a python-socketio namespace for presence, chat, the round and signals.

Connect authenticates with the participant token (``auth={"token": ...}``). Every event is
checked before its handler runs: a known name, the sender's role, the payload size and the
sender's rate. A refused event gets an ``error`` event (``{"event", "reason"}``) and an
``{"ok": false, "reason"}`` acknowledgement; a connection that keeps being refused is
disconnected. Events from the server: ``welcome``, ``presence``, ``chat``, ``round``,
``round_warning`` and ``input_request`` (to the participant whose run called ``input()``);
for calls (``server/media.py``): ``media_peer``, ``rtc``, ``media`` and ``media_ended``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio

from rooms.errors import (
    BadRequest,
    ClusterUnavailable,
    Conflict,
    Forbidden,
    RateLimited,
    RoomError,
)
from rooms.presence import Presence
from rooms.registry import RoomRegistry
from rooms.room import now_us
from rooms.rounds import RoundKeeper
from rooms.signals import parse_chat, parse_signal
from rooms.store import Store
from rooms.types import Participant, Role, RoomInfo, RoomKind, RoundState, TimelineEvent
from server.cluster import (
    CLUSTER_DOWN,
    Cluster,
    OwnerUnreachable,
    participant_from,
    participant_json,
)
from server.execution import Execution
from server.media import MAX_SDP_BYTES, MediaHub
from server.settings import Settings
from server.tokens import TokenSigner

log = logging.getLogger("clarityhire.control")

SPEAKERS = frozenset({Role.INTERVIEWER, Role.CANDIDATE})


class TokenBucket:
    """``burst`` events at once, refilled at ``per_second``."""

    def __init__(self, burst: int, per_second: float) -> None:
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.per_second = per_second
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(slots=True)
class ControlConnection:
    sid: str
    participant: Participant
    info: RoomInfo
    buckets: dict[str, TokenBucket]
    refusals: deque[float] = field(default_factory=deque)
    in_call: bool = False  # joined the room's call (so leaving it needs saying)


Handler = Callable[[ControlConnection, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class EventRule:
    """Who may send an event, how big and how often, and what handles it."""

    handler: Handler
    roles: frozenset[Role]
    burst: int
    per_second: float
    max_bytes: int = 0  # 0: the control_max_payload_bytes setting


class ControlNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(
        self,
        settings: Settings,
        signer: TokenSigner,
        registry: RoomRegistry,
        store: Store,
        presence: Presence,
        rounds: RoundKeeper,
        execution: Execution,
        media: MediaHub,
        cluster: Cluster | None = None,
    ) -> None:
        super().__init__("/")
        self.cluster = cluster
        self.settings = settings
        self.signer = signer
        self.registry = registry
        self.store = store
        self.presence = presence
        self.rounds = rounds
        self.execution = execution
        self.media = media
        execution.emit_to = self.emit_to
        self._connections: dict[str, ControlConnection] = {}
        s = settings
        candidate = frozenset({Role.CANDIDATE})
        interviewer = frozenset({Role.INTERVIEWER})
        self._rules: dict[str, EventRule] = {
            "chat": EventRule(self._chat, SPEAKERS, s.chat_burst, s.chat_per_second),
            "round": EventRule(self._round, SPEAKERS, 5, 1.0),
            "signal": EventRule(self._signal, candidate, s.signal_burst, s.signal_per_second),
            "run": EventRule(self._run, SPEAKERS, 10, 2.0, s.run_max_code_bytes + 1024),
            "interrupt": EventRule(self._interrupt, SPEAKERS, 5, 1.0),
            "restart": EventRule(self._restart, SPEAKERS, 3, 0.2),
            "input": EventRule(self._input, SPEAKERS, 20, 5.0),
            # Calls: only interviewers and candidates publish audio and video.
            "media_join": EventRule(self._media_join, SPEAKERS, 5, 1.0),
            "media_leave": EventRule(self._media_leave, SPEAKERS, 5, 1.0),
            "media_state": EventRule(self._media_state, SPEAKERS, 10, 2.0),
            "media_recording": EventRule(self._media_recording, interviewer, 5, 1.0),
            "media_fallback": EventRule(self._media_fallback, SPEAKERS, 5, 1.0),
            "rtc": EventRule(self._rtc, SPEAKERS, 200, 50.0, MAX_SDP_BYTES + 1024),
        }

    # python-socketio dispatches every event through here; we route with our own table so
    # that unknown events, roles, sizes and rates are checked in one place.
    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self._connect(args[0], args[2] if len(args) > 2 else None)
        if event == "disconnect":
            return await self._disconnect(args[0])
        sid = args[0]
        conn = self._connections.get(sid)
        if conn is None:
            return None
        try:
            if len(args) != 2:
                raise BadRequest("send exactly one payload object")
            rule = self._rules.get(event)
            if rule is None:
                raise BadRequest(f"unknown event {event!r}")
            if conn.participant.role not in rule.roles:
                raise Forbidden(f"role {conn.participant.role.value} cannot send {event!r}")
            try:
                size = len(orjson.dumps(args[1]))
            except TypeError as e:  # integers over 64 bits, binary attachments
                raise BadRequest("payload must be plain JSON") from e
            limit = rule.max_bytes or self.settings.control_max_payload_bytes
            if size > limit:
                raise BadRequest(f"payload of {size} bytes exceeds the {limit} limit")
            if not conn.buckets[event].take():
                raise RateLimited(f"too many {event!r} events: slow down")
            return await rule.handler(conn, args[1])
        except RoomError as e:
            return await self._refuse(sid, conn, event, e.reason)

    # -- connection --------------------------------------------------------------------------

    async def _connect(self, sid: str, auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            if self.cluster is not None and not self.cluster.healthy:
                raise ClusterUnavailable(CLUSTER_DOWN)
            claims = self.signer.verify_any(token)
            info = await self.registry.info(claims.room_id)
        except RoomError as e:
            raise socketio.exceptions.ConnectionRefusedError(e.reason) from e
        buckets = {name: TokenBucket(r.burst, r.per_second) for name, r in self._rules.items()}
        conn = ControlConnection(sid, claims.participant, info, buckets)
        self._connections[sid] = conn
        who = claims.participant
        await self.enter_room(sid, info.id)
        await self.enter_room(sid, _person_room(info.id, who.id))
        joined = self.presence.arrive(info.id, who, now_us())
        round_ = await self.rounds.arrived(info, who)
        chat = await self.store.events(info.id, ("chat",), self.settings.chat_history)
        people, version = await self._people(info.id)
        await self.emit(
            "welcome",
            {
                "participant": {"id": who.id, "name": who.name, "role": who.role.value},
                "room": info.to_json(),
                "round": round_.to_json(),
                "presence": people,
                "presence_version": version,
                "chat": [_chat_json(e) for e in chat],
                "execution": self.execution.status(),
            },
            to=sid,
        )
        if joined:
            await self._record(info.id, who, "join", {"name": who.name, "role": who.role.value})
        await self._send_presence(info.id)

    async def _disconnect(self, sid: str) -> None:
        conn = self._connections.pop(sid, None)
        if conn is not None:
            try:
                if conn.in_call:
                    await self._in_call(conn, "leave", {})
            except Exception:  # a call's cleanup must not keep the person present
                log.exception("leaving the call failed", extra={"room": conn.info.id})
            room_id = conn.info.id
            self.presence.depart(room_id, conn.participant)
            await self._send_presence(room_id)

    async def on_left(self, room_id: str, who: Participant) -> None:
        """Presence's leave handler: a person's grace period ran out."""
        await self._record(room_id, who, "leave", {"name": who.name})
        await self._send_presence(room_id)

    async def close_room(self, room_id: str, reason: str) -> None:
        """Disconnect everyone of a room (it was deleted), telling them why."""
        for sid, conn in list(self._connections.items()):
            if conn.info.id == room_id:
                await self.emit("error", {"event": "connection", "reason": reason}, to=sid)
                self._connections.pop(sid, None)
                await self.disconnect(sid)

    async def notify(self, room_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send a server event to everyone in a room (the round keeper's voice)."""
        await self.emit(event, payload, room=room_id)

    # -- events ------------------------------------------------------------------------------

    async def _chat(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        text = parse_chat(data, self.settings.chat_max_chars)
        event = await self._record(
            conn.info.id, conn.participant, "chat", {"name": conn.participant.name, "text": text}
        )
        await self.emit("chat", _chat_json(event), room=conn.info.id)
        return {"ok": True}

    async def _round(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or set(data) != {"action"}:
            raise BadRequest("a round event is {'action': 'start' | 'end' | 'submit'}")
        round_ = await self.rounds.act(conn.info, conn.participant, str(data["action"]))
        return {"ok": True, "round": round_.to_json()}

    async def _signal(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        kind, fields = parse_signal(data)
        await self._record(conn.info.id, conn.participant, f"signal.{kind}", fields)
        return {"ok": True}

    async def _run(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        """``{"file": name}`` runs the file as it is now; add ``"code"`` to run a selection or
        a cell of it instead."""
        if not isinstance(data, dict) or not isinstance(data.get("file"), str):
            raise BadRequest("a run is {'file': name, 'code'?: text}")
        if set(data) - {"file", "code"}:
            raise BadRequest("a run is {'file': name, 'code'?: text}")
        code = data.get("code")
        if code is not None and not isinstance(code, str):
            raise BadRequest("'code' must be text")
        await self._check_not_ended(conn)
        await self.execution.run(conn.info, conn.participant, data["file"], code)
        run = {"file": data["file"], "selection": code is not None}
        await self._record(conn.info.id, conn.participant, "run", run)
        return {"ok": True}

    async def _interrupt(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        interrupted = await self.execution.interrupt(conn.info, conn.participant)
        return {"ok": True, "interrupted": interrupted}

    async def _restart(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        await self._check_not_ended(conn)
        await self.execution.restart(conn.info, conn.participant)
        return {"ok": True}

    async def _input(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        if (
            not isinstance(data, dict)
            or set(data) != {"value"}
            or not isinstance(data["value"], str)
        ):
            raise BadRequest("an input is {'value': text}")
        await self.execution.answer(conn.info, conn.participant, data["value"])
        return {"ok": True}

    async def _media_join(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        audio, video = _media_flags(data)
        await self._check_not_ended(conn)
        return await self._in_call(conn, "join", {"audio": audio, "video": video})

    async def _media_leave(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        return await self._in_call(conn, "leave", {})

    async def _media_state(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        audio, video = _media_flags(data)
        return await self._in_call(conn, "state", {"audio": audio, "video": video})

    async def _media_recording(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or set(data) != {"on"} or not isinstance(data["on"], bool):
            raise BadRequest("a recording event is {'on': true | false}")
        if conn.info.kind != RoomKind.LIVE:
            raise Forbidden("only live rooms turn recording on and off")
        return await self._in_call(conn, "recording", {"on": data["on"]})

    async def _media_fallback(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        return await self._in_call(conn, "fallback", {})

    async def _rtc(self, conn: ControlConnection, data: Any) -> dict[str, Any]:
        """``{"to": participant id | "server", "kind": "offer" | "answer" | "ice", "sdp" |
        "candidate", "link"?}``: passed to the other participant as ``rtc`` with ``from``."""
        if not isinstance(data, dict) or set(data) - {"to", "kind", "sdp", "candidate", "link"}:
            raise BadRequest("an rtc message is {'to', 'kind', 'sdp' | 'candidate', 'link'?}")
        return await self._in_call(conn, "rtc", data)

    async def _in_call(
        self, conn: ControlConnection, op: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Do a call operation where the room's call is: here, or (cluster mode) on the node
        that owns the room, whose media hub answers and emits to this connection by its sid."""
        if self.cluster is None:
            answer = await self._call_here(conn.info, conn.participant, conn.sid, None, op, args)
        else:
            who = conn.participant
            request = {
                "room": conn.info.id,
                "who": participant_json(who),
                "sid": conn.sid,
                "node": self.cluster.node_id,
                "op": op,
                "args": args,
            }
            try:
                answer = await self.cluster.on_owner(conn.info.id, "call", request)
            except OwnerUnreachable as e:
                raise Conflict(f"the server holding this room's call is unreachable: {e}") from e
            if not answer.get("ok"):
                raise Conflict(str(answer.get("reason")))
        if op in ("join", "leave"):
            conn.in_call = op == "join"
        return answer

    async def handle_forwarded_call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Cluster mode: a call operation of a connection on some node (this one owns the
        room). The connection's node checked its role and payload, like every event's."""
        try:
            info = await self.registry.info(request["room"])
            who = participant_from(request["who"])
            assert self.cluster is not None
            node = request["node"] if request["node"] != self.cluster.node_id else None
            return await self._call_here(
                info, who, request["sid"], node, request["op"], request["args"]
            )
        except RoomError as e:
            return {"ok": False, "reason": e.reason}

    async def _call_here(
        self,
        info: RoomInfo,
        who: Participant,
        sid: str,
        node: str | None,
        op: str,
        args: dict[str, Any],
    ) -> dict[str, Any]:
        """A call operation on this node's media hub; ``node`` is the connection's, if it is
        another one."""
        media = self.media
        if op == "join":
            if self.cluster is not None:
                # The owner holds the room (and its lease) while the call lasts.
                self.registry.release(await self.registry.open(info.id))
            return await media.join(info, who, sid, args["audio"], args["video"], node)
        if op == "leave":
            await media.leave(info, who, sid)
        elif op == "state":
            await media.set_state(info, who, args["audio"], args["video"])
        elif op == "recording":
            return await media.set_recording(info, who, args["on"])
        elif op == "fallback":
            return await media.fall_back_to_relay(info, who)
        elif op == "rtc":
            return await media.signal(info, who, args)
        else:
            raise BadRequest(f"unknown call operation {op!r}")
        return {"ok": True}

    async def show_media(self, room_id: str, participant_id: str, media: Any) -> None:
        """Who is in the call, muted or not, in presence (if the person is connected here:
        in a cluster, every node hears of it and the person's own nodes say it)."""
        if self.presence.set_media(room_id, participant_id, media):
            await self._send_presence(room_id)

    async def call_lost(self, room_id: str, reason: str) -> None:
        """The node that held a room's call died: those here who were in it are told, and
        presence no longer shows them in it."""
        in_call = self.presence.clear_media(room_id)
        for participant_id in in_call:
            await self.emit_to(room_id, participant_id, "media_ended", {"reason": reason})
        if in_call:
            await self._send_presence(room_id)

    async def emit_to(
        self, room_id: str, participant_id: str, event: str, payload: dict[str, Any]
    ) -> None:
        """Send an event to every connection of one participant of a room (on any node)."""
        await self.emit(event, payload, room=_person_room(room_id, participant_id))

    async def _people(self, room_id: str) -> tuple[list[dict[str, Any]], int]:
        """Who is in a room, and the version of that list (in a cluster, every node's
        people, with a number that orders the lists the nodes send)."""
        people = self.presence.people(room_id)
        if self.cluster is None:
            return people, 0
        return await self.cluster.presence(room_id, people)

    async def _send_presence(self, room_id: str) -> None:
        people, version = await self._people(room_id)
        await self.emit("presence", {"participants": people, "version": version}, room=room_id)

    # -- internals ---------------------------------------------------------------------------

    async def _check_not_ended(self, conn: ControlConnection) -> None:
        if conn.participant.role == Role.CANDIDATE:
            if (await self.rounds.current(conn.info.id)).state == RoundState.ENDED:
                raise Forbidden("the round has ended: nothing more can be run")

    async def _record(
        self, room_id: str, who: Participant, type_: str, data: dict[str, Any]
    ) -> TimelineEvent:
        event = TimelineEvent(room_id, now_us(), who.id, type_, data)
        await self.store.append_event(event)
        return event

    async def _refuse(
        self, sid: str, conn: ControlConnection, event: str, reason: str
    ) -> dict[str, Any]:
        log.info(
            "control event refused",
            extra={"room": conn.info.id, "participant": conn.participant.id, "event": event,
                   "reason": reason},
        )  # fmt: skip
        await self.emit("error", {"event": event, "reason": reason}, to=sid)
        now = time.monotonic()
        conn.refusals.append(now)
        while conn.refusals and conn.refusals[0] < now - 60:
            conn.refusals.popleft()
        if len(conn.refusals) > self.settings.abuse_refusals_per_minute:
            log.warning("disconnecting an abusive connection", extra={"room": conn.info.id})
            await self.disconnect(sid)
        return {"ok": False, "reason": reason}


def _person_room(room_id: str, participant_id: str) -> str:
    """The Socket.IO room of one participant's connections to a room."""
    return f"{room_id}/{participant_id}"


def _media_flags(data: Any) -> tuple[bool, bool]:
    if (
        not isinstance(data, dict)
        or set(data) != {"audio", "video"}
        or not all(isinstance(v, bool) for v in data.values())
    ):
        raise BadRequest("media flags are {'audio': bool, 'video': bool}")
    return data["audio"], data["video"]


def _chat_json(event: TimelineEvent) -> dict[str, Any]:
    return {
        "author": event.author,
        "name": event.data["name"],
        "text": event.data["text"],
        "at": event.at_us // 1000,
    }
