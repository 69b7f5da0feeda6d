"""Calls: WebRTC between aiortc peers signalled through the real server, relayed and recorded
by the server's own aiortc peers. `make test` runs these inside a network namespace that has
only a loopback interface, so no media packet can leave 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import av
import httpx
import pytest
from browser import chromium, open_room
from conftest import ServerProcess, eventually, eventually_equal
from control import ControlClient
from rtcclient import CallClient

pytestmark = pytest.mark.media


@pytest.fixture(autouse=True)
def loopback_only() -> None:
    interfaces = [name for _, name in socket.if_nameindex()]
    assert interfaces == ["lo"], (
        f"media tests must run where only loopback exists (have {interfaces}): "
        "`make test` runs them under `unshare --net`"
    )


@pytest.fixture
def media_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(media_ice_addresses="127.0.0.1")


@pytest.fixture
def relay_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(media_ice_addresses="127.0.0.1", media_mode="relay")


@pytest.fixture
async def people() -> AsyncIterator[list[CallClient]]:
    """Call clients made by a test; all hung up at the end."""
    made: list[CallClient] = []
    yield made
    for client in made:
        await client.close()
        await client.control.close()


async def in_call(
    server: ServerProcess, room: str, role: str, name: str, made: list[CallClient]
) -> tuple[CallClient, str]:
    token, participant_id = server.participant(room, role, name)
    client = CallClient(await ControlClient(server.url, token).connect())
    made.append(client)
    await client.join()
    return client, participant_id


async def receiving(client: CallClient, sender: str, frames: int = 15) -> None:
    """Wait until ``client`` has decoded ``frames`` video and audio frames from ``sender``."""
    await eventually(
        lambda: (
            client.frames_from(sender, "video") >= frames
            and client.frames_from(sender, "audio") >= frames
        ),
        timeout=20,
    )


async def test_two_peers_connect_in_mesh_and_receive_each_other(
    media_server: ServerProcess, people: list[CallClient]
) -> None:
    server = media_server
    room = server.create_room()
    ivy, ivy_id = await in_call(server, room, "interviewer", "Ivy", people)
    cal, cal_id = await in_call(server, room, "candidate", "Cal", people)
    assert ivy.state == {"mode": "mesh", "recording": False}
    await receiving(ivy, cal_id)
    await receiving(cal, ivy_id)
    # Mesh: the media went browser to browser, the server took none and recorded nothing.
    assert ivy.uplink is None and cal.uplink is None
    assert not (server.data_dir / "recordings").exists()
    # Presence shows who is in the call, with microphone and camera.
    presence = {p["id"]: p["media"] for p in ivy.control.presence()}
    assert presence[cal_id] == {"audio": True, "video": True}


async def test_relay_forwards_to_everyone_and_a_leaver_ends_for_the_others(
    relay_server: ServerProcess, people: list[CallClient]
) -> None:
    server = relay_server
    room = server.create_room()
    ivy, ivy_id = await in_call(server, room, "interviewer", "Ivy", people)
    cal, cal_id = await in_call(server, room, "candidate", "Cal", people)
    assert cal.state["mode"] == "relay"
    await receiving(ivy, cal_id)
    await receiving(cal, ivy_id)
    # Every connection a participant has is to the server.
    assert set(ivy.peers) == {cal_id} and ivy.uplink is not None
    ian, _ = await in_call(server, room, "interviewer", "Ian", people)
    await receiving(ian, ivy_id)
    await receiving(ian, cal_id)

    await cal.leave()
    for other in (ivy, ian):
        await eventually(lambda o=other: o.received[cal_id].ended >= {"audio", "video"})
    # Those who stay still hear each other.
    before = ian.frames_from(ivy_id, "video")
    await eventually(lambda: ian.frames_from(ivy_id, "video") > before + 10)


async def test_a_recorded_solo_room_writes_a_playable_file_on_the_timeline(
    media_server: ServerProcess, people: list[CallClient]
) -> None:
    server = media_server
    room = server.create_room(kind="solo")
    cal, cal_id = await in_call(server, room, "candidate", "Cal", people)
    assert cal.state == {"mode": "mesh", "recording": True}
    assert cal.uplink is not None
    await eventually(lambda: cal.uplink is not None and cal.uplink.connectionState == "connected")
    sent_from = time.monotonic()
    await asyncio.sleep(3)
    await cal.leave()
    sent = time.monotonic() - sent_from

    events = await server.events(room, ("media.started", "media.stopped"))
    assert [e.type for e in events] == ["media.started", "media.stopped"]
    started, stopped = events
    assert started.author == cal_id and started.data["file"] == stopped.data["file"]
    assert abs(started.data["started_at"] - started.at_us // 1000) < 1000
    files = list((server.data_dir / "recordings" / room).iterdir())
    assert [f.name for f in files] == [started.data["file"]]

    with av.open(str(files[0])) as container:
        kinds = sorted(s.type for s in container.streams)
        frames = {"audio": 0, "video": 0}
        last = 0.0
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            frames[kind] += 1
            last = max(last, float(frame.time or 0))
    assert kinds == ["audio", "video"]
    assert frames["video"] > 50 and frames["audio"] > 100
    assert abs(last - sent) < 1.0, (last, sent)
    assert abs(stopped.data["duration_s"] - sent) < 1.0

    # A reviewer can fetch it for replay; deleting the room removes it from the disk.
    reviewer = server.token(room, "reviewer")
    url = f"{server.url}/api/rooms/{room}/recordings/{files[0].name}?token={reviewer}"
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == files[0].read_bytes()
    assert httpx.get(url.replace(reviewer, server.token(room, "candidate"))).status_code == 403
    assert server.api("DELETE", f"/api/rooms/{room}").status_code == 204
    assert not (server.data_dir / "recordings" / room).exists()


async def test_garbage_wrong_roles_and_other_rooms_are_refused_and_disturb_nothing(
    media_server: ServerProcess, people: list[CallClient]
) -> None:
    server = media_server
    room = server.create_room()
    ivy, ivy_id = await in_call(server, room, "interviewer", "Ivy", people)
    cal, cal_id = await in_call(server, room, "candidate", "Cal", people)
    await receiving(ivy, cal_id)

    garbage = await cal.control.call("rtc", {"to": ivy_id, "kind": "offer", "sdp": "hello"})
    assert garbage == {"ok": False, "reason": garbage["reason"]}
    assert garbage["reason"].startswith("invalid SDP")
    bad_kind = await cal.control.call("rtc", {"to": ivy_id, "kind": "bye", "sdp": "v=0"})
    assert bad_kind["reason"] == "'kind' must be offer, answer or ice"
    # Nothing for the server to take here: no recording, no relay.
    offer = await cal.control.call("rtc", {"to": "server", "kind": "offer", "sdp": MINIMAL_SDP})
    assert "the server takes no media in this call" in offer["reason"]

    observer = await ControlClient(server.url, server.token(room, "observer", "Obi")).connect()
    refused = await observer.call("media_join", {"audio": True, "video": True})
    assert refused == {"ok": False, "reason": "role observer cannot send 'media_join'"}
    await observer.close()

    other_room = server.create_room()
    _, stranger_id = server.participant(other_room, "candidate", "Stan")
    aimed = await cal.control.call("rtc", {"to": stranger_id, "kind": "offer", "sdp": MINIMAL_SDP})
    assert aimed == {"ok": False, "reason": f"{stranger_id!r} is not in this room's call"}
    candidate_only = await ControlClient(server.url, server.token(room, "candidate")).connect()
    not_joined = await candidate_only.call("rtc", {"to": ivy_id, "kind": "ice", "candidate": None})
    assert not_joined == {"ok": False, "reason": "join the call first (media_join)"}
    await candidate_only.close()

    # The call goes on.
    before = ivy.frames_from(cal_id, "video")
    await eventually(lambda: ivy.frames_from(cal_id, "video") > before + 10)


MINIMAL_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
)


SEEK_JS = """(at) => {
  const scrubber = document.querySelector('#scrubber')
  scrubber.value = at
  scrubber.dispatchEvent(new Event('input'))
}"""
VIDEO_TIME_JS = """(file) => {
  const video = Array.from(document.querySelectorAll('#videos video'))
    .find((v) => v.src.includes(file))
  return video.currentTime
}"""


REMOTE_VIDEO_WIDTH_JS = """() => {
  const video = document.querySelector('.tile.remote video')
  return video ? video.videoWidth : 0
}"""


async def test_two_browser_pages_see_each_others_camera_and_the_recording_indicator(
    media_server: ServerProcess,
) -> None:
    server = media_server
    room = server.create_room()
    async with chromium() as browser:
        pages = []
        for role, name in (("interviewer", "Ivy"), ("candidate", "Cal")):
            page = await open_room(browser, room_link(server, room, role, name))
            await page.page.click("#call-join")
            await page.page.locator("#call-leave").wait_for()
            pages.append(page)
        ivy, cal = pages
        widths: dict[str, int] = {}

        async def both_show_video() -> bool:
            for page, name in ((ivy, "ivy"), (cal, "cal")):
                widths[name] = await page.page.evaluate(REMOTE_VIDEO_WIDTH_JS)
            return all(w > 0 for w in widths.values())

        deadline = time.monotonic() + 20
        while not await both_show_video():
            assert time.monotonic() < deadline, f"remote video widths: {widths}"
            await asyncio.sleep(0.2)
        names = await ivy.page.locator(".tile.remote figcaption").all_inner_texts()
        assert names == ["Cal"]
        # The interviewer records; the candidate sees it, and both are written to files.
        assert await cal.page.locator("#recording").is_hidden()
        await ivy.page.click("#call-record")
        await cal.page.locator("#recording").wait_for(state="visible")
        await eventually(lambda: len(list((server.data_dir / "recordings").rglob("*.webm"))) == 2)
        await cal.screenshot("room-candidate-call.png")
        await asyncio.sleep(3)
        for page in pages:
            await page.page.click("#call-leave")
        assert ivy.errors == [] and cal.errors == []
        started = await server.events(room, ("media.started",))
        await eventually_equal(lambda: server.events(room, ("media.stopped",)), 2, timeout=15)

        # The reviewer's replay plays both recordings in step with the playhead.
        token = server.token(room, "reviewer", "Rae")
        replay = await (await browser.new_context()).new_page()
        await replay.goto(f"{server.url}/rooms/{room}/replay?token={token}")
        videos = replay.locator("#videos video")
        await eventually_equal(videos.count, 2)
        # Chromium loaded the WebM files (their metadata at least): they are playable.
        loaded = (
            "() => Array.from(document.querySelectorAll('#videos video'))"
            ".every((v) => v.readyState >= 1)"
        )
        await eventually_equal(lambda: replay.evaluate(loaded), True)
        target = started[0].data["started_at"] + 2000
        await replay.evaluate(SEEK_JS, target)
        offset = await replay.evaluate(VIDEO_TIME_JS, started[0].data["file"])
        assert abs(offset - 2.0) < 0.5, offset


def room_link(server: ServerProcess, room: str, role: str, name: str) -> str:
    token = server.token(room, role, name)
    return f"http://127.0.0.1:{server.port}/rooms/{room}?token={token}"
