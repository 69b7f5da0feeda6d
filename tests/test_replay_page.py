"""The reviewer's replay page and the take-home diff, in Chromium against a real server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from browser import RoomPage, chromium, open_room
from conftest import ServerProcess, eventually, eventually_equal
from control import ControlClient
from playwright.async_api import Browser
from yclient import YClient

PASTED = "    return 42  # copied from somewhere\n"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def open_replay(browser: Browser, server: ServerProcess, room: str) -> RoomPage:
    token = server.token(room, "reviewer", "Rae")
    page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    replay = RoomPage(page)
    page.on("pageerror", lambda error: replay.errors.append(str(error)))
    await page.goto(f"{server.url}/rooms/{room}/replay?token={token}")
    await page.locator("#scrubber").wait_for()
    return replay


async def replay_text(replay: RoomPage) -> str:
    return str(await replay.page.evaluate(
        "() => Array.from(document.querySelectorAll('#replay-editor .cm-line'))"
        ".map((l) => l.textContent).join('\\n')"
    ))  # fmt: skip


async def test_the_replay_scrubbed_to_a_marker_shows_the_file_as_it_was(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room(files={"main.py": "x = 1\n"})
    ivy_token = server.token(room, "interviewer", "Ivy")
    cal_token = server.token(room, "candidate", "Cal")
    ivy_doc = await YClient(server.ws_url(room, ivy_token)).connect()
    cal_doc = await YClient(server.ws_url(room, cal_token)).connect()
    ivy = await ControlClient(server.url, ivy_token).connect()
    cal = await ControlClient(server.url, cal_token).connect()
    assert (await ivy.call("round", {"action": "start"}))["ok"]
    for char in "def f():\n":
        await cal_doc.type(char)
    await cal_doc.type(PASTED)
    await eventually(lambda: ivy_doc.text == cal_doc.text)
    at_paste = cal_doc.text
    digest = hashlib.sha256(PASTED.encode()).hexdigest()
    offset = len(at_paste) - len(PASTED)
    signal = {"type": "paste", "length": len(PASTED), "hash": digest, "file": "main.py",
              "offset": offset}  # fmt: skip
    assert (await cal.call("signal", signal))["ok"]
    await asyncio.sleep(0.3)
    for char in "# later\n":
        await cal_doc.type(char)
    await eventually(lambda: ivy_doc.text == cal_doc.text)
    assert (await ivy.call("chat", {"text": "let us stop here"}))["ok"]
    assert (await ivy.call("round", {"action": "end"}))["ok"]
    final = cal_doc.text

    replay = await open_replay(browser, server, room)
    assert await replay_text(replay) == "x = 1\n"  # the playhead starts at the seed
    kinds = await replay.page.locator(".marker").evaluate_all(
        "(ms) => ms.map((m) => m.dataset.kind)"
    )
    assert kinds == ["round", "paste", "chat", "round"]
    await replay.page.click(".marker.paste")
    await eventually_equal(lambda: replay_text(replay), at_paste)
    await replay.page.click("#next-marker")  # the chat line, after the later typing
    await eventually_equal(lambda: replay_text(replay), final)
    await replay.page.click("#prev-marker")
    await eventually_equal(lambda: replay_text(replay), at_paste)

    # The integrity panel points at the paste; its time seeks the replay there.
    flag = replay.page.locator("#integrity li[data-signal=pasted_share]")
    await flag.wait_for()
    await replay.page.click("#mode-code")
    await replay.page.click("#next-marker")
    await flag.locator("button.time").first.click()
    await eventually_equal(lambda: replay_text(replay), at_paste)

    await replay.page.click("#mode-provenance")
    pasted = replay.page.locator("#provenance span[data-origin=paste]")
    await pasted.wait_for()
    assert await pasted.inner_text() == PASTED
    assert await pasted.get_attribute("data-author") == "Cal"
    await replay.screenshot("replay-reviewer.png")
    assert replay.errors == []
    for client in (ivy, cal):
        await client.close()


async def test_playback_reaches_the_end_with_idle_time_skipped(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room(files={"main.py": ""})
    doc = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    await doc.type("a")
    await asyncio.sleep(6)  # an idle stretch longer than the page skips
    await doc.type("b")
    await eventually(lambda: doc.text == "ab")
    replay = await open_replay(browser, server, room)
    await replay.page.select_option("#speed", "1")
    await replay.page.click("#play")
    # At 1x the 6 s gap would take 6 s; skipped, the end comes within about a second.
    await eventually_equal(lambda: replay_text(replay), "ab", timeout=3)
    assert await replay.page.locator("#play").inner_text() == "▶ Play"  # stopped at the end


async def test_a_followup_shows_the_changes_since_the_take_home(
    server: ServerProcess, browser: Browser
) -> None:
    takehome = server.create_room(kind="solo", files={"main.py": "def solve():\n    pass\n"})
    doc = await YClient(server.ws_url(takehome, server.token(takehome, "candidate"))).connect()
    await doc.type("print(solve())\n")
    await eventually(lambda: "print" in doc.text)
    await doc.close()
    response = server.api("POST", "/api/rooms", {"kind": "live", "seed_from": takehome})
    assert response.status_code == 201, response.text
    live = response.json()["id"]

    ivy = await open_room(browser, f"{server.url}/rooms/{live}?token="
                          f"{server.token(live, 'interviewer', 'Ivy')}")  # fmt: skip
    await ivy.type_at_end("# reviewed live\n")
    await ivy.page.click("#show-changes")
    diff = ivy.page.locator("#changes .diff[data-file='main.py']")
    await diff.wait_for()
    text = await diff.inner_text()
    assert "+# reviewed live" in text and "print(solve())" in text
    assert "+print(solve())" not in text  # that was already in the submission
    assert "+def solve" not in text
    await ivy.page.click("#show-changes")
    assert await ivy.page.locator("#changes").is_hidden()
