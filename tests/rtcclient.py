"""A call participant made of aiortc: what the room page does with WebRTC, in Python.

It joins a room's call over the control plane, sends a synthetic camera and microphone, and
counts the frames it receives from each other participant (mesh: straight from their peer;
relay: from the server's downlink that carries them).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from control import ControlClient

from server.media import use_ice_addresses

use_ice_addresses(("127.0.0.1",))


class TestPattern(VideoStreamTrack):
    """A small moving grey picture (320x240, 30 fps): cheap to encode on a 2-core machine."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(320, 240, "yuv420p")
        shade = bytes([(pts // 3000) % 256])
        for plane in frame.planes:
            plane.update(shade * plane.buffer_size)
        frame.pts, frame.time_base = pts, fractions.Fraction(time_base)
        return frame


@dataclass
class Received:
    """What arrived from one other participant."""

    tracks: list[MediaStreamTrack] = field(default_factory=list)
    frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    ended: set[str] = field(default_factory=set)


class CallClient:
    def __init__(self, control: ControlClient) -> None:
        self.control = control
        self.config = RTCConfiguration(iceServers=[])
        self.peers: dict[str, RTCPeerConnection] = {}  # by the other participant's id
        self.uplink: RTCPeerConnection | None = None
        self.received: dict[str, Received] = {}
        self.state: dict[str, Any] = {}
        self.local: list[MediaStreamTrack] = []
        self.local_video: type[VideoStreamTrack] = TestPattern
        self._tasks: set[asyncio.Task[None]] = set()
        sio = control.sio
        sio.on("rtc", self._on_rtc)
        sio.on("media_peer", self._on_peer)
        sio.on("media", self._on_media)

    async def join(self) -> dict[str, Any]:
        self.local = [AudioStreamTrack(), self.local_video()]
        answer: dict[str, Any] = await self.control.call(
            "media_join", {"audio": True, "video": True}
        )
        assert answer["ok"], answer
        self.state = {"mode": answer["mode"], "recording": answer["recording"]}
        if self.state["recording"] or self.state["mode"] == "relay":
            await self.send_uplink()
        if self.state["mode"] == "mesh":
            for peer in answer["peers"]:
                await self._offer_to(peer["id"])
        return answer

    async def leave(self) -> None:
        await self.control.call("media_leave", {})
        await self.close()

    async def close(self) -> None:
        for pc in [*self.peers.values(), *([self.uplink] if self.uplink else [])]:
            await pc.close()
        self.peers.clear()
        self.uplink = None
        for task in list(self._tasks):
            task.cancel()

    def frames_from(self, participant_id: str, kind: str) -> int:
        got = self.received.get(participant_id)
        return got.frames[kind] if got else 0

    async def send_uplink(self) -> None:
        pc = RTCPeerConnection(self.config)
        for track in self.local:
            pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.control.call(
            "rtc", {"to": "server", "kind": "offer", "sdp": pc.localDescription.sdp}
        )
        assert answer["ok"], answer
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self.uplink = pc

    # -- internals -------------------------------------------------------------------------------

    def _peer(self, other: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(self.config)
        self.peers[other] = pc
        got = self.received.setdefault(other, Received())
        pc.on("track", lambda track: self._consume(got, track))
        return pc

    async def _offer_to(self, other: str) -> None:
        pc = self._peer(other)
        for track in self.local:
            pc.addTrack(track)
        await pc.setLocalDescription(await pc.createOffer())
        await self.control.call(
            "rtc", {"to": other, "kind": "offer", "sdp": pc.localDescription.sdp}
        )

    async def _on_rtc(self, message: dict[str, Any]) -> None:
        other = message["from"]
        if message["kind"] == "offer":
            old = self.peers.pop(other, None)
            if old is not None:
                await old.close()
            pc = self._peer(other)
            if message.get("via") != "server":  # mesh: send ours back on the same connection
                for track in self.local:
                    pc.addTrack(track)
            await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            reply = {"kind": "answer", "sdp": pc.localDescription.sdp}
            if message.get("via") == "server":
                reply |= {"to": "server", "link": other}
            else:
                reply |= {"to": other}
            await self.control.call("rtc", reply)
        elif message["kind"] == "answer" and other in self.peers:
            await self.peers[other].setRemoteDescription(
                RTCSessionDescription(message["sdp"], "answer")
            )

    async def _on_peer(self, message: dict[str, Any]) -> None:
        if not message["joined"]:
            pc = self.peers.pop(message["id"], None)
            if pc is not None:
                await pc.close()

    async def _on_media(self, message: dict[str, Any]) -> None:
        self.state = message

    def _consume(self, got: Received, track: MediaStreamTrack) -> None:
        got.tracks.append(track)

        async def count() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    got.frames[track.kind] += 1
            got.ended.add(track.kind)

        task = asyncio.create_task(count())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
