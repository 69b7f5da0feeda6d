#!/usr/bin/env python3
"""Server CPU for calls: a recorded stream and a relayed stream, per second of media.

Each scenario starts the real server (``tests/conftest.py``'s ``ServerProcess``) on a free
127.0.0.1 port and connects aiortc participants to it (``tests/rtcclient.py``), each sending a
640x480 30 fps VP8 picture with moving bars and an Opus track. The server's CPU time (user +
system, from /proc) is read over a ``--seconds`` window after a warm-up, and divided by the
window and by the number of streams the server handles:

* ``idle``: the server with one room and nobody in the call (the floor to subtract);
* ``recorded``: one solo room, one participant: the server receives one stream and writes the
  encoded frames to WebM as they are (pass-through, no decode, no encode);
* ``relayed``: one relay-mode room with two participants: the server receives two streams,
  decodes each and encodes it again for the other participant.

The participants' own encoders run on the same 2 cores, so compare within one run. Run it
where only loopback exists, as ``make bench-media`` does:
``unshare --net -- sh -c 'ip link set lo up && .venv/bin/python bench/media.py'``.
It prints a table and writes ``bench/results/media.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import av  # noqa: E402
from aiortc import VideoStreamTrack  # noqa: E402
from conftest import ServerProcess  # noqa: E402
from control import ControlClient  # noqa: E402
from rtcclient import CallClient  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class MovingBars(VideoStreamTrack):
    """640x480 at 30 fps with vertical bars that move: a bitrate like a webcam's, not a flat
    picture that encodes to nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._rows = [bytes((x * 3 + s) % 256 for x in range(640)) for s in range(0, 256, 4)]

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(640, 480, "yuv420p")
        row = self._rows[(pts // 3000) % len(self._rows)]
        frame.planes[0].update(row * 480)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts, frame.time_base = pts, fractions.Fraction(time_base)
        return frame


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def participant(server: ServerProcess, room: str, role: str, name: str) -> CallClient:
    token = server.token(room, role, name)
    client = CallClient(await ControlClient(server.url, token).connect())
    client.local_video = MovingBars
    await client.join()
    return client


async def measure(server: ServerProcess, seconds: float) -> float:
    assert server.proc is not None
    before, start = cpu_seconds(server.proc.pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(server.proc.pid) - before) / (time.monotonic() - start)


async def scenario(name: str, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    env = {"CLARITYHIRE_MEDIA_ICE_ADDRESSES": "127.0.0.1"}
    if name == "relayed":
        env["CLARITYHIRE_MEDIA_MODE"] = "relay"
    folder = data / name
    folder.mkdir()
    server = ServerProcess(folder, "sqlite", env)
    server.start()
    clients: list[CallClient] = []
    try:
        if name == "idle":
            server.create_room()
            streams = 0
        elif name == "recorded":
            room = server.create_room(kind="solo")
            clients.append(await participant(server, room, "candidate", "Cal"))
            streams = 1
        else:
            room = server.create_room()
            clients.append(await participant(server, room, "interviewer", "Ivy"))
            clients.append(await participant(server, room, "candidate", "Cal"))
            streams = 2
        await asyncio.sleep(args.warmup)
        cpu = await measure(server, args.seconds)
        # Video frames each participant decoded from the others (relay): proof of flow.
        received = [sum(r.frames["video"] for r in c.received.values()) for c in clients]
    finally:
        for client in clients:
            await client.close()
            await client.control.close()
        server.stop()
    # The recording's size over the time it covers: the bitrate the participant sent.
    recorded = [p for p in (folder / "recordings").rglob("*.webm")]
    kbps = None
    if recorded:
        with av.open(str(recorded[0])) as container:
            seconds = float(container.duration or 0) / 1e6
        kbps = round(recorded[0].stat().st_size * 8 / seconds / 1000) if seconds else None
    return {"scenario": name, "streams": streams, "server_cpu_s_per_s": round(cpu, 4),
            "received_video_frames": received, "recorded_kbps": kbps}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "media.json")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="clarityhire-bench-media-"))
    try:
        rows = [await scenario(name, args, data) for name in ("idle", "recorded", "relayed")]
    finally:
        shutil.rmtree(data, ignore_errors=True)
    idle = rows[0]["server_cpu_s_per_s"]
    recorded = rows[1]["server_cpu_s_per_s"] - idle
    relayed = (rows[2]["server_cpu_s_per_s"] - idle) / 2
    result = {
        "cpu_s_per_s_recorded_stream": round(recorded, 4),
        "cpu_s_per_s_relayed_stream": round(relayed, 4),
        "recorded_rooms_per_core": round(1 / recorded, 1) if recorded > 0 else None,
        # A relayed live room has two people: two streams decoded and encoded again.
        "relayed_rooms_per_core": round(1 / (2 * relayed), 1) if relayed > 0 else None,
        "idle_server_cpu_s_per_s": idle,
        "scenarios": rows,
        "seconds": args.seconds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"{'scenario':<10} {'streams':>7} {'server CPU-s/s':>15}")
    for row in rows:
        print(f"{row['scenario']:<10} {row['streams']:>7} {row['server_cpu_s_per_s']:>15.4f}")
    print(f"recorded stream: {recorded:.4f} CPU-s/s (target <= 0.1); relayed stream: {relayed:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
