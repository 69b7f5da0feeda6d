"""Pass-through recording: the encoded frames a server peer receives, muxed into WebM as they are.

Decoding and re-encoding a 640x480 stream costs ~18x the CPU of receiving it, and could not keep
up on a small machine; muxing the received VP8 frames and Opus packets costs almost nothing.
aiortc has no public hook for encoded frames, so ``tap_receiver`` puts a stand-in for the
receiver's private decoder queue, which the jitter buffer fills with whole encoded frames.
``check_aiortc_internals`` verifies at start-up that the hook is where it should be (the
version is pinned in pyproject.toml).

A file is written as frames arrive (WebM clusters), so the part written before a crash plays;
``close`` adds the index and duration.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack

log = logging.getLogger("clarityhire.recording")

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
# Audio that arrives before the first video keyframe is held back (WebM needs every stream
# declared before the first packet, and the video's size is only known from a keyframe).
MAX_HELD_AUDIO = 500  # 10 s of 20 ms Opus packets
PLI_INTERVAL_S = 1.0


async def check_aiortc_internals() -> None:
    """Fail at start-up, not mid-interview, if aiortc moved the frames ``tap_receiver`` taps."""
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        queue_ = getattr(transceiver.receiver, _DECODER_QUEUE, None)
        if not isinstance(queue_, queue.Queue):
            raise RuntimeError(
                "aiortc's RTCRtpReceiver has no private decoder queue: this aiortc version "
                "cannot be used for pass-through recording (see pyproject.toml for the pin)"
            )
    finally:
        await pc.close()


FrameSink = Callable[[Any], None]


class _FrameTap:
    """Stands in for a receiver's decoder queue: each encoded frame goes to ``sink``, and on
    to the real decoder only when someone needs decoded frames (relaying)."""

    def __init__(self, sink: FrameSink, decoder_queue: queue.Queue[Any] | None) -> None:
        self._sink = sink
        self._decoder_queue = decoder_queue
        self._ended = threading.Event()

    def put(self, task: Any) -> None:  # called on the event loop by the receiver
        if task is None:
            self._ended.set()
            if self._decoder_queue is not None:
                self._decoder_queue.put(None)
            return
        try:
            self._sink(task[1])
        except Exception:  # an exception here would close the whole peer connection
            log.exception("recording a frame failed")
        if self._decoder_queue is not None:
            self._decoder_queue.put(task)

    def get(self) -> Any:  # called by aiortc's decoder thread
        if self._decoder_queue is not None:
            return self._decoder_queue.get()
        self._ended.wait()
        return None


def tap_receiver(receiver: RTCRtpReceiver, sink: FrameSink, decode: bool) -> None:
    """Send every encoded frame ``receiver`` assembles to ``sink``. Call it in the peer
    connection's ``track`` event, before the receiver starts. Without ``decode`` the
    receiver's track never yields frames (nothing is decoded)."""
    original = getattr(receiver, _DECODER_QUEUE)
    setattr(receiver, _DECODER_QUEUE, _FrameTap(sink, original if decode else None))


def receiver_of(pc: RTCPeerConnection, track: MediaStreamTrack) -> RTCRtpReceiver:
    for receiver in pc.getReceivers():
        if receiver.track is track:
            return receiver
    raise LookupError("no receiver for this track")


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when ``data`` is a VP8 keyframe (RFC 6386 section 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = (data[6] | data[7] << 8) & 0x3FFF
    height = (data[8] | data[9] << 8) & 0x3FFF
    return width, height


class WebmRecording:
    """One participant's media, written to one WebM file (VP8 video, Opus audio).

    Each track's timestamps start at 0 when its first frame arrives; the track is placed on
    the file's clock by the arrival time of that first frame, relative to ``started``.
    """

    def __init__(self, path: Path, kinds: set[str]) -> None:
        self.path = path
        self.kinds = kinds
        self.started = time.monotonic()
        self.started_wall_ms = int(time.time() * 1000)
        # Set once the video receiver is known: asks the sender for a keyframe (RTCP PLI).
        self.request_keyframe: Callable[[], None] | None = None
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._offsets: dict[str, int] = {}
        self._last_pts: dict[str, int] = {}
        self._held_audio: list[tuple[bytes, int]] = []
        self._last_pli = 0.0
        self.frames = {"video": 0, "audio": 0}
        self.closed = False

    # -- frames from the taps ------------------------------------------------------------------

    def video_frame(self, frame: Any) -> None:
        if self.closed:
            return
        if self._container is None:
            size = vp8_keyframe_size(frame.data)
            if size is None:
                self._ask_keyframe()
                return
            self._open(size)
        self._write("video", frame.data, frame.timestamp, VIDEO_CLOCK)

    def audio_frame(self, frame: Any) -> None:
        if self.closed:
            return
        if self._container is None and "video" in self.kinds:
            # Placed on the clock now (at arrival), written once the video stream is declared.
            if len(self._held_audio) < MAX_HELD_AUDIO:
                self._held_audio.append((frame.data, self._pts("audio", frame.timestamp)))
            return
        if self._container is None:
            self._open(None)
        self._write("audio", frame.data, frame.timestamp, AUDIO_CLOCK)

    def close(self) -> float:
        """Finish the file; returns its duration in seconds (0 when nothing was written)."""
        if self.closed:
            return 0.0
        self.closed = True
        if self._container is None:
            return 0.0
        duration = (
            max(
                (pts / (VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK))
                for kind, pts in self._last_pts.items()
            )
            if self._last_pts
            else 0.0
        )
        try:
            self._container.close()
        except Exception:
            log.exception("closing a recording failed", extra={"file": str(self.path)})
        return float(duration)

    # -- internals -----------------------------------------------------------------------------

    def _ask_keyframe(self) -> None:
        now = time.monotonic()
        if self.request_keyframe is not None and now - self._last_pli > PLI_INTERVAL_S:
            self._last_pli = now
            self.request_keyframe()

    def _open(self, size: tuple[int, int] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), "w", format="webm")
        if size is not None:
            width, height = size
            self._video = container.add_mux_stream("vp8", rate=30, width=width, height=height)
        if "audio" in self.kinds:
            # Created with the libopus encoder (never fed) so that the file gets the OpusHead
            # header a player needs; the packets are the ones received.
            self._audio = container.add_stream("libopus", rate=AUDIO_CLOCK, layout="stereo")
        self._container = container
        for data, pts in self._held_audio:
            self._mux(self._audio, "audio", data, pts, AUDIO_CLOCK, keyframe=True)
        self._held_audio.clear()

    def _pts(self, kind: str, timestamp: int) -> int:
        clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        if kind not in self._offsets:
            self._offsets[kind] = int((time.monotonic() - self.started) * clock) - timestamp
        return self._offsets[kind] + timestamp

    def _write(self, kind: str, data: bytes, timestamp: int, clock: int) -> None:
        stream = self._video if kind == "video" else self._audio
        if stream is None:
            return
        keyframe = kind == "audio" or vp8_keyframe_size(data) is not None
        self._mux(stream, kind, data, self._pts(kind, timestamp), clock, keyframe)

    def _mux(
        self, stream: Any, kind: str, data: bytes, pts: int, clock: int, keyframe: bool
    ) -> None:
        if pts <= self._last_pts.get(kind, -1):
            return  # a late or repeated frame: WebM needs increasing times per track
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = Fraction(1, clock)
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        self._last_pts[kind] = pts
        self.frames[kind] += 1
