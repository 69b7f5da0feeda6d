"""Audio and video: WebRTC signalled over the control plane, recorded and relayed by aiortc.

Browsers of a room connect to each other (mesh); the server only passes their offers, answers
and ICE candidates along. The server's own aiortc peers join in two cases:

* recording (solo rooms, or live rooms where the interviewer turned it on): each participant
  sends an *uplink* to the server, whose encoded frames are written to a WebM file as they are
  (``server/recording.py``), with the start and end on the room's timeline;
* relay (the ``media_mode`` setting, or a room falls back to it when two browsers cannot
  connect): each participant's uplink is decoded once, and every other participant gets a
  *downlink* per source, offered by the server, carrying it through aiortc's MediaRelay.

Links are named from the receiver's side: a client answers the server's downlink offer for
``link`` = the participant whose media it carries.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from rooms.errors import BadRequest, Conflict
from rooms.room import now_us
from rooms.types import Participant, RoomInfo, RoomKind
from server.recording import WebmRecording, receiver_of, tap_receiver

log = logging.getLogger("clarityhire.media")

MAX_SDP_BYTES = 64 * 1024
_SDP_LINE = re.compile(r"^[a-z]=[^\r\n]*$")

# emit(sid, event, payload): tell one connection.
Emit = Callable[[str, str, dict[str, Any]], Awaitable[None]]
# record(room_id, author_id, type, data): put an event on the room's timeline.
Record = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
# presence(room_id, participant_id, {"audio", "video"} | None): show it to the room.
ShowPresence = Callable[[str, str, dict[str, bool] | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """What the media settings say (see config/defaults.toml, media_*)."""

    mode: str  # "mesh" or "relay"
    ice_servers: tuple[str, ...]
    turn_username: str
    turn_password: str
    ice_addresses: tuple[str, ...]
    record_solo: bool
    max_participants: int
    recordings_dir: Path

    def browser_ice_servers(self) -> list[dict[str, Any]]:
        """ICE servers as RTCPeerConnection takes them in a browser."""
        servers: list[dict[str, Any]] = []
        for url in self.ice_servers:
            entry: dict[str, Any] = {"urls": url}
            if url.startswith(("turn:", "turns:")):
                entry |= {"username": self.turn_username, "credential": self.turn_password}
            servers.append(entry)
        return servers

    def rtc_configuration(self) -> RTCConfiguration:
        # Never aiortc's default (a public STUN server): only what the settings list.
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls=s["urls"], username=s.get("username"), credential=s.get("credential")
                )
                for s in self.browser_ice_servers()
            ]
        )


def use_ice_addresses(addresses: tuple[str, ...]) -> None:
    """Gather host candidates on these addresses only (aioice skips 127.0.0.1 by itself,
    which leaves a loopback-only machine with none). Empty: aioice's own discovery."""
    if addresses:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


def check_sdp(value: Any) -> str:
    """A session description that looks like one; the browser or aiortc judges the rest."""
    if not isinstance(value, str) or not value:
        raise BadRequest("'sdp' must be a session description (text)")
    if len(value.encode()) > MAX_SDP_BYTES:
        raise BadRequest(f"session description over {MAX_SDP_BYTES} bytes")
    lines = [line for line in value.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0" or not any(x.startswith("m=") for x in lines):
        raise BadRequest("invalid SDP: it must start with v=0 and describe at least one m= line")
    bad = next((line for line in lines if not _SDP_LINE.match(line)), None)
    if bad is not None:
        raise BadRequest(f"invalid SDP line {bad[:40]!r}")
    return value


def check_candidate(value: Any) -> dict[str, Any] | None:
    """An ICE candidate as RTCIceCandidate.toJSON() gives it; None ends the candidates."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("candidate"), str):
        raise BadRequest("'candidate' must be {'candidate': text, 'sdpMid', 'sdpMLineIndex'}")
    if len(value["candidate"]) > 1024:
        raise BadRequest("ICE candidate over 1024 characters")
    mid, index = value.get("sdpMid"), value.get("sdpMLineIndex")
    if not (mid is None or isinstance(mid, str)) or not (index is None or isinstance(index, int)):
        raise BadRequest("'sdpMid' must be text and 'sdpMLineIndex' an integer")
    return {"candidate": value["candidate"], "sdpMid": mid, "sdpMLineIndex": index}


@dataclass(slots=True)
class CallMember:
    participant: Participant
    sid: str
    audio: bool
    video: bool
    node: str | None = None  # cluster mode: the node of the member's connection, if another


@dataclass(slots=True)
class Call:
    """The call of one room: who is in it and the server's peers for it."""

    info: RoomInfo
    mode: str
    recording: bool
    members: dict[str, CallMember] = field(default_factory=dict)
    uplinks: dict[str, RTCPeerConnection] = field(default_factory=dict)
    sources: dict[str, list[MediaStreamTrack]] = field(default_factory=dict)
    downlinks: dict[tuple[str, str], RTCPeerConnection] = field(default_factory=dict)
    recordings: dict[str, WebmRecording] = field(default_factory=dict)
    relay: MediaRelay = field(default_factory=MediaRelay)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "recording": self.recording}

    @property
    def needs_uplinks(self) -> bool:
        return self.recording or self.mode == "relay"


class MediaHub:
    """Every call on this node. The control namespace calls it; it answers through ``emit``."""

    def __init__(
        self, config: MediaConfig, emit: Emit, record: Record, presence: ShowPresence
    ) -> None:
        self.config = config
        self.emit = emit
        self.record = record
        self.presence = presence
        self._calls: dict[str, Call] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    def has_call(self, room_id: str) -> bool:
        """Whether anyone is in a room's call on this node."""
        call = self._calls.get(room_id)
        return call is not None and bool(call.members)

    def member_nodes(self) -> set[str]:
        """The other nodes that the members of this node's calls are connected to."""
        return {m.node for c in self._calls.values() for m in c.members.values() if m.node}

    async def drop_members_on(self, dead: set[str]) -> None:
        """Those whose connection was on a node that died have left the call."""
        for call in list(self._calls.values()):
            for member in [m for m in call.members.values() if m.node in dead]:
                await self.leave(call.info, member.participant, member.sid)

    def call_of(self, info: RoomInfo) -> Call:
        """The room's call, made on first use: recorded from the start in solo rooms."""
        call = self._calls.get(info.id)
        if call is None:
            recording = info.kind == RoomKind.SOLO and self.config.record_solo
            call = Call(info, self.config.mode, recording)
            self._calls[info.id] = call
        return call

    # -- participants --------------------------------------------------------------------------

    async def join(
        self,
        info: RoomInfo,
        who: Participant,
        sid: str,
        audio: bool,
        video: bool,
        node: str | None = None,
    ) -> dict[str, Any]:
        """Enter the call; the answer tells the client how to connect and to whom. ``node``:
        the node of the connection ``sid``, when it is not this one (cluster mode)."""
        call = self.call_of(info)
        async with call.lock:
            previous = call.members.get(who.id)
            if previous is None and len(call.members) >= self.config.max_participants:
                raise Conflict(f"the call is full ({self.config.max_participants} people)")
            if previous is not None and previous.sid != sid:
                await self.emit(previous.sid, "media_ended", {"reason": "joined from elsewhere"})
                await self._drop(call, who.id)
            call.members[who.id] = CallMember(who, sid, audio, video, node)
            others = [m for pid, m in call.members.items() if pid != who.id]
        await self.presence(info.id, who.id, {"audio": audio, "video": video})
        for other in others:
            await self.emit(other.sid, "media_peer", _peer_json(who, joined=True))
        return {
            "ok": True,
            **call.state(),
            "ice_servers": self.config.browser_ice_servers(),
            "peers": [_peer_json(m.participant, joined=True) for m in others],
        }

    async def leave(self, info: RoomInfo, who: Participant, sid: str | None = None) -> None:
        """Leave the call (or drop this connection's place in it, when it was in it)."""
        call = self._calls.get(info.id)
        if call is None:
            return
        async with call.lock:
            member = call.members.get(who.id)
            if member is None or (sid is not None and member.sid != sid):
                return
            await self._drop(call, who.id)
            others = list(call.members.values())
        await self.presence(info.id, who.id, None)
        for other in others:
            await self.emit(other.sid, "media_peer", _peer_json(who, joined=False))

    async def set_state(self, info: RoomInfo, who: Participant, audio: bool, video: bool) -> None:
        """Microphone and camera on or off, shown to the room in presence."""
        member = self._member(info, who)
        member.audio, member.video = audio, video
        await self.presence(info.id, who.id, {"audio": audio, "video": video})

    # -- signalling ----------------------------------------------------------------------------

    async def signal(
        self, info: RoomInfo, who: Participant, data: dict[str, Any]
    ) -> dict[str, Any]:
        """``rtc`` from a client: to another participant (mesh), or to the server."""
        sender = self._member(info, who)
        kind = data.get("kind")
        if kind not in ("offer", "answer", "ice"):
            raise BadRequest("'kind' must be offer, answer or ice")
        message: dict[str, Any] = {"kind": kind}
        if kind == "ice":
            message["candidate"] = check_candidate(data.get("candidate"))
        else:
            message["sdp"] = check_sdp(data.get("sdp"))
        target = data.get("to")
        if target == "server":
            return await self._to_server(info, sender, kind, message, data.get("link"))
        call = self.call_of(info)
        member = call.members.get(target) if isinstance(target, str) else None
        if member is None:
            raise Conflict(f"{target!r} is not in this room's call")
        if call.mode == "relay":
            raise Conflict("this call is relayed by the server: send to 'server'")
        await self.emit(member.sid, "rtc", {"from": who.id, **message})
        return {"ok": True}

    async def set_recording(self, info: RoomInfo, who: Participant, on: bool) -> dict[str, Any]:
        """The interviewer turns recording of a live room on or off; everyone is told."""
        call = self.call_of(info)
        async with call.lock:
            if call.recording == on:
                return {"ok": True, **call.state()}
            call.recording = on
            if not on:
                for pid in list(call.recordings):
                    await self._stop_recording(call, pid)
                if call.mode == "mesh":
                    for pid in list(call.uplinks):
                        await call.uplinks.pop(pid).close()
        await self.record(info.id, who.id, "media.recording", {"on": on})
        await self._tell_all(call, "media", call.state())
        return {"ok": True, **call.state()}

    async def fall_back_to_relay(self, info: RoomInfo, who: Participant) -> dict[str, Any]:
        """Two browsers of the call could not reach each other: relay everyone's media."""
        self._member(info, who)
        call = self.call_of(info)
        if call.mode != "relay":
            call.mode = "relay"
            log.info("call falls back to relay", extra={"room": info.id})
            await self.record(info.id, who.id, "media.relay", {"reason": "peers could not connect"})
            await self._tell_all(call, "media", call.state())
        return {"ok": True, **call.state()}

    async def end_call(self, room_id: str, reason: str) -> None:
        """End a room's call (its round ended, it was deleted, the server stops): everyone in
        it is told why, every recording is finished and the server's peers are closed."""
        call = self._calls.pop(room_id, None)
        if call is None:
            return
        async with call.lock:
            members = list(call.members.values())
            for member in members:
                await self.emit(member.sid, "media_ended", {"reason": reason})
            # Everyone's, members or not (an uplink may have raced a leave).
            for pid in {*call.members, *call.uplinks, *call.recordings}:
                await self._drop(call, pid)
            for pc in list(call.downlinks.values()):
                await pc.close()
            call.downlinks.clear()
        for member in members:
            await self.presence(room_id, member.participant.id, None)

    async def close(self) -> None:
        for room_id in list(self._calls):
            await self.end_call(room_id, "the server is stopping")

    # -- the server's peers --------------------------------------------------------------------

    async def _to_server(
        self, info: RoomInfo, sender: CallMember, kind: str, message: dict[str, Any], link: Any
    ) -> dict[str, Any]:
        call = self.call_of(info)
        pid = sender.participant.id
        if kind == "offer":
            if not call.needs_uplinks:
                raise Conflict("the server takes no media in this call (no recording, no relay)")
            return {"ok": True, "sdp": await self._accept_uplink(call, sender, message["sdp"])}
        if kind == "answer":
            pc = call.downlinks.get((pid, link)) if isinstance(link, str) else None
            if pc is None:
                raise Conflict(f"no server offer for link {link!r} is waiting for an answer")
            await _describe(pc, RTCSessionDescription(message["sdp"], "answer"))
            return {"ok": True}
        pc = call.downlinks.get((pid, link)) if isinstance(link, str) else call.uplinks.get(pid)
        # An empty candidate ends the browser's list: nothing to add.
        if pc is not None and message["candidate"] and message["candidate"]["candidate"]:
            # aiortc gathers before it answers and needs no trickle; a browser's candidates
            # are still added, in case its description went out before gathering finished.
            try:
                line = message["candidate"]["candidate"].split(":", 1)[-1]
                candidate = candidate_from_sdp(line)
                candidate.sdpMid = message["candidate"]["sdpMid"]
                candidate.sdpMLineIndex = message["candidate"]["sdpMLineIndex"]
                await pc.addIceCandidate(candidate)
            except Exception as e:
                raise BadRequest(f"ICE candidate refused: {e}") from e
        return {"ok": True}

    async def _accept_uplink(self, call: Call, sender: CallMember, sdp: str) -> str:
        pid = sender.participant.id
        async with call.lock:
            if call.members.get(pid) is not sender or self._calls.get(call.info.id) is not call:
                raise Conflict("you left the call while your media was on its way")
            old = call.uplinks.pop(pid, None)
            if old is not None:
                await self._stop_recording(call, pid)
                await old.close()
                # What others received of the old uplink has ended: new downlinks follow.
                for key in [k for k in call.downlinks if k[1] == pid]:
                    await call.downlinks.pop(key).close()
            pc = RTCPeerConnection(self.config.rtc_configuration())
            call.uplinks[pid] = pc
            tracks: list[MediaStreamTrack] = []
            recording = await self._start_recording(call, sender) if call.recording else None

            def on_track(track: MediaStreamTrack) -> None:
                tracks.append(track)
                if recording is not None:
                    receiver = receiver_of(pc, track)
                    sink = recording.video_frame if track.kind == "video" else recording.audio_frame
                    tap_receiver(receiver, sink, decode=call.mode == "relay")
                    if track.kind == "video":
                        recording.request_keyframe = lambda: self._ask_keyframe(receiver)

            pc.on("track", on_track)
            await _describe(pc, RTCSessionDescription(sdp, "offer"))
            if recording is not None:
                recording.kinds = {t.kind for t in tracks}
            await pc.setLocalDescription(await pc.createAnswer())
            if call.mode == "relay":
                call.sources[pid] = tracks
                await self._connect_downlinks(call, pid)
            return str(pc.localDescription.sdp)

    async def _connect_downlinks(self, call: Call, pid: str) -> None:
        """Offer the new source to everyone else, and everyone else's to it."""
        pairs = [(other, pid) for other in call.members if other != pid]
        pairs += [(pid, other) for other in call.sources if other != pid]
        for to, source in pairs:
            member = call.members.get(to)
            if member is None or (to, source) in call.downlinks:
                continue
            pc = RTCPeerConnection(self.config.rtc_configuration())
            for track in call.sources[source]:
                pc.addTrack(call.relay.subscribe(track))
            await pc.setLocalDescription(await pc.createOffer())
            call.downlinks[(to, source)] = pc
            offer = {"from": source, "via": "server", "kind": "offer"}
            await self.emit(member.sid, "rtc", {**offer, "sdp": pc.localDescription.sdp})

    async def _start_recording(self, call: Call, sender: CallMember) -> WebmRecording:
        pid = sender.participant.id
        recording = WebmRecording(
            self.config.recordings_dir / call.info.id / f"{pid}-{now_us() // 1000}.webm",
            {"audio", "video"},
        )
        call.recordings[pid] = recording
        await self.record(
            call.info.id,
            pid,
            "media.started",
            {"file": recording.path.name, "started_at": recording.started_wall_ms},
        )
        return recording

    async def _stop_recording(self, call: Call, pid: str) -> None:
        recording = call.recordings.pop(pid, None)
        if recording is None:
            return
        duration = recording.close()
        await self.record(
            call.info.id,
            pid,
            "media.stopped",
            {
                "file": recording.path.name,
                "started_at": recording.started_wall_ms,
                "duration_s": round(duration, 3),
                "frames": dict(recording.frames),
            },
        )

    async def _drop(self, call: Call, pid: str) -> None:
        """Take a participant out of a call: recording finished, their peers closed."""
        call.members.pop(pid, None)
        try:
            await self._stop_recording(call, pid)
        finally:
            call.sources.pop(pid, None)
            uplink = call.uplinks.pop(pid, None)
            if uplink is not None:
                await uplink.close()
            for key in [k for k in call.downlinks if pid in k]:
                await call.downlinks.pop(key).close()

    def _ask_keyframe(self, receiver: Any) -> None:
        """Ask the sender for a keyframe (RTCP PLI) on every stream the receiver hears."""
        for source in receiver.getSynchronizationSources():
            task = asyncio.ensure_future(receiver._send_rtcp_pli(source.source))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _member(self, info: RoomInfo, who: Participant) -> CallMember:
        call = self._calls.get(info.id)
        member = call.members.get(who.id) if call else None
        if member is None:
            raise Conflict("join the call first (media_join)")
        return member

    async def _tell_all(self, call: Call, event: str, payload: dict[str, Any]) -> None:
        for member in list(call.members.values()):
            await self.emit(member.sid, event, payload)


async def _describe(pc: RTCPeerConnection, description: RTCSessionDescription) -> None:
    try:
        await pc.setRemoteDescription(description)
    except Exception as e:  # aiortc's own verdict on a description that looked fine
        raise BadRequest(f"session description refused: {e}") from e


def _peer_json(who: Participant, joined: bool) -> dict[str, Any]:
    return {"id": who.id, "name": who.name, "role": who.role.value, "joined": joined}
