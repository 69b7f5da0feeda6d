"""The room page in a real browser (Debian's Chromium through Playwright) against a real
server: editing together, runs, notes, the end of a round, offline typing, bad links."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from browser import CuttableProxy, RoomPage, chromium, open_room
from conftest import ServerProcess, eventually, eventually_equal
from playwright.async_api import Browser, WebSocket
from yclient import YClient


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
def kernel_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(kernel_pool_size="1", run_timeout_seconds="10")


def link(server: ServerProcess, room: str, token: str, port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or server.port}/rooms/{room}?token={token}"


async def converged(a: RoomPage, b: RoomPage, contains: str) -> str:
    """Wait until both pages show the same text containing ``contains``; returns it."""
    texts: list[str] = []

    async def same() -> bool:
        texts[:] = [await a.editor_text(), await b.editor_text()]
        return texts[0] == texts[1] and contains in texts[0]

    deadline = time.monotonic() + 15
    while not await same():
        assert time.monotonic() < deadline, f"pages differ: {texts}"
        await asyncio.sleep(0.1)
    return texts[0]


async def test_interviewer_and_candidate_edit_and_run_together(
    kernel_server: ServerProcess, browser: Browser
) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": "print('first line')\n"})
    ivy = await open_room(browser, link(server, room, server.token(room, "interviewer", "Ivy")))
    cal = await open_room(browser, link(server, room, server.token(room, "candidate", "Cal")))

    await cal.type_at_end("print(6 * 7)")
    await converged(ivy, cal, "print(6 * 7)")
    caret = ivy.page.locator(".editor .cm-ySelectionInfo")
    await caret.filter(has_text="Cal").wait_for(state="attached", timeout=10000)
    # Each person sees the other listed with their role.
    await ivy.page.locator("#people li[data-role=candidate]", has_text="Cal").wait_for()

    await ivy.page.click("#run-file")
    for page in (ivy, cal):
        record = page.page.locator("#outputs .record[data-status=ok]")
        await record.wait_for(timeout=30000)
        assert "first line\n42" in await record.locator("pre.stream").inner_text()
        assert "Ivy" in await record.locator(".run-author").inner_text()

    await ivy.screenshot("room-interviewer.png")
    await cal.screenshot("room-candidate.png")
    assert ivy.errors == [] and cal.errors == []


async def test_candidate_page_has_no_notes_and_never_receives_them(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room()
    ivy = await open_room(browser, link(server, room, server.token(room, "interviewer", "Ivy")))
    notes = ivy.page.locator("#notes .cm-content")
    await notes.click()
    await ivy.page.keyboard.type("SECRET-BEFORE weak on recursion")

    context = await browser.new_context()
    page = await context.new_page()
    sockets: list[str] = []
    received: list[str] = []

    def watch(ws: WebSocket) -> None:
        sockets.append(ws.url)
        ws.on("framereceived", lambda payload: received.append(repr(payload)))

    page.on("websocket", watch)
    await page.goto(link(server, room, server.token(room, "candidate", "Cal")))
    cal = RoomPage(page)
    await cal.wait_connected()
    await notes.click()
    await ivy.page.keyboard.type(" SECRET-AFTER")
    # The interviewer's own view shows the notes, and the notes reached the server...
    observer = YClient(server.notes_url(room, server.token(room, "reviewer")), file="notes")
    await observer.connect()
    await eventually(lambda: "SECRET-AFTER" in observer.text)
    await observer.close()
    # ...while the candidate's page has no panel, never opened the socket, never got a byte.
    await cal.type_at_end("x")  # something else flows to the candidate meanwhile
    await ivy.page.wait_for_timeout(500)
    assert await page.locator("#notes").count() == 0
    assert await page.get_by_text("Private notes").count() == 0
    assert sockets and not any("/notes" in url for url in sockets)
    assert received and not any("SECRET" in frame for frame in received)
    await ivy.screenshot("room-interviewer-notes.png")


async def test_after_the_interviewer_ends_the_round_the_candidate_cannot_type(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room(files={"main.py": "answer = 1\n"})
    ivy = await open_room(browser, link(server, room, server.token(room, "interviewer", "Ivy")))
    cal = await open_room(browser, link(server, room, server.token(room, "candidate", "Cal")))
    await ivy.page.click("#round-start")
    await cal.page.locator("#round-state[data-state=live]").wait_for()
    await cal.type_at_end("# before the end")
    await converged(ivy, cal, "# before the end")

    await ivy.page.click("#round-end")  # the confirmation dialog is accepted
    await cal.page.locator("#round-state[data-state=ended]").wait_for()
    await cal.type_at_end("# AFTER THE END")
    await cal.page.keyboard.press("Backspace")
    await cal.page.wait_for_timeout(500)

    final = "answer = 1\n# before the end"
    assert await cal.editor_text() == final
    assert await ivy.editor_text() == final
    stored = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    assert stored.text == final
    assert await cal.page.locator("#run-file").is_disabled()
    await cal.screenshot("room-candidate-ended.png")


async def test_typing_offline_is_kept_and_synced_on_reconnect(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room(files={"main.py": "start\n"})
    proxy = await CuttableProxy(server.port).start()
    try:
        ivy = await open_room(browser, link(server, room, server.token(room, "interviewer")))
        cal_url = link(server, room, server.token(room, "candidate", "Cal"), proxy.port)
        cal = await open_room(browser, cal_url)

        proxy.cut()
        await cal.page.locator("#connection[data-state=reconnecting]").wait_for(timeout=15000)
        await cal.type_at_end("typed while offline")
        await ivy.type_at_end(" and the interviewer too")
        await cal.page.wait_for_timeout(1000)
        assert "offline" not in await ivy.editor_text()

        proxy.restore()
        await cal.wait_connected()
        text = await converged(ivy, cal, "typed while offline")
        assert "and the interviewer too" in text
        stored = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
        assert stored.text == text
    finally:
        await proxy.close()


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("expired", 401, "token expired"),
        ("tampered", 401, "the link is damaged"),
        ("other room", 403, "token is for another room"),
    ],
)
async def test_a_bad_link_opens_a_page_that_says_what_is_wrong(
    server: ServerProcess, browser: Browser, case: str, status: int, says: str
) -> None:
    room = server.create_room()
    if case == "expired":
        token = server.token(room, "candidate", ttl=1)
        await asyncio.sleep(1.5)
    elif case == "tampered":
        token = server.token(room, "candidate")
        token = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    else:
        token = server.token(server.create_room(), "candidate")
    page = await (await browser.new_context()).new_page()
    response = await page.goto(link(server, room, token))
    assert response is not None and response.status == status
    heading = await page.locator("h1").inner_text()
    assert heading == "This link cannot open the room"
    body = await page.inner_text("body")
    assert says in body and "Ask the person who invited you for a new link" in body
    if case == "expired":
        await RoomPage(page).screenshot("link-expired.png")


async def test_files_added_renamed_and_deleted_show_for_everyone(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room(files={"main.py": "import util\n"})
    ivy = await open_room(browser, link(server, room, server.token(room, "interviewer", "Ivy")))
    cal = await open_room(browser, link(server, room, server.token(room, "candidate", "Cal")))

    await cal.page.click(".tab-add")
    await cal.page.fill(".inline-input", "util.py")
    await cal.page.press(".inline-input", "Enter")
    await cal.page.locator(".tab.active[data-file='util.py']").wait_for()
    await cal.type_at_end("def helper(): return 1")
    await ivy.page.click(".tab[data-file='util.py'] .tab-name")
    await converged(ivy, cal, "def helper(): return 1")

    await ivy.page.dblclick(".tab[data-file='util.py'] .tab-name")
    await ivy.page.fill(".inline-input", "helpers.py")
    await ivy.page.press(".inline-input", "Enter")
    # The candidate, who had the file open, follows it to its new name.
    await cal.page.locator(".tab.active[data-file='helpers.py']").wait_for()
    assert await cal.page.locator(".tab[data-file='util.py']").count() == 0
    assert await cal.editor_text() == "def helper(): return 1"

    await ivy.page.click(".tab[data-file='helpers.py'] .tab-close")  # confirmed
    await cal.page.locator(".tab[data-file='helpers.py']").wait_for(state="detached")
    await cal.page.locator(".tab.active[data-file='main.py']").wait_for()
    stored = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    assert set(stored.files.keys()) == {"main.py"}
    # A bad name is refused with a message, and nothing is created.
    await cal.page.click(".tab-add")
    await cal.page.fill(".inline-input", "../escape.py")
    await cal.page.press(".inline-input", "Enter")
    await cal.page.locator(".toast.error", has_text="not a relative file path").wait_for()
    assert await cal.page.locator(".tab").count() == 1


INPUT_AND_HTML = """name = input('Your name? ')
print('hello', name)
from IPython.display import HTML, display
display(HTML('<b id=bold>bold</b><img src=x onerror="window.pwned=1">'
             '<script>window.pwned=2</script><a href="https://example.org">a link</a>'))
"""


async def test_a_run_asks_for_input_and_html_output_is_shown_sanitized(
    kernel_server: ServerProcess, browser: Browser
) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": INPUT_AND_HTML})
    ivy = await open_room(browser, link(server, room, server.token(room, "interviewer", "Ivy")))
    cal = await open_room(browser, link(server, room, server.token(room, "candidate", "Cal")))

    await cal.page.click(".editor .cm-content")
    await cal.page.keyboard.press("Control+Enter")
    # Only the person who ran the code is asked.
    await cal.page.locator(".input-request label", has_text="Your name?").wait_for(timeout=30000)
    assert await ivy.page.locator(".input-request:not([hidden])").count() == 0
    await cal.page.fill("#stdin", "Ada")
    await cal.page.press("#stdin", "Enter")

    for page in (ivy, cal):
        record = page.page.locator("#outputs .record[data-status=ok]")
        await record.wait_for(timeout=30000)
        assert "hello Ada" in await record.locator("pre.stream").inner_text()
        html = record.locator(".html-output")
        assert await html.locator("b").inner_text() == "bold"
        assert await html.locator("script").count() == 0
        assert await html.locator("[onerror]").count() == 0
        assert await html.locator("a").get_attribute("rel") == "noopener noreferrer"
        assert await page.page.evaluate("window.pwned") is None


async def test_a_server_without_the_bundle_says_how_to_build_it(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(web_dir=str(tmp_path / "no-bundle-here"))
    room = server.create_room()
    response = httpx.get(link(server, room, server.token(room, "candidate")))
    assert response.status_code == 503
    assert "make web" in response.text and "Your link is valid" in response.text


async def test_the_room_page_forbids_outside_scripts_and_connections(server: ServerProcess) -> None:
    room = server.create_room()
    response = httpx.get(link(server, room, server.token(room, "candidate", "<b>Cal</b>")))
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "<b>Cal</b>" not in response.text  # names are data, never markup


PASTE_JS = """(text) => {
  const data = new DataTransfer()
  data.setData('text/plain', text)
  const event = new ClipboardEvent('paste', { clipboardData: data, bubbles: true })
  document.querySelector('.editor .cm-content').dispatchEvent(event)
}"""


async def test_the_candidates_page_reports_pastes_and_leaving_the_tab(
    server: ServerProcess, browser: Browser
) -> None:
    room = server.create_room(files={"main.py": ""})
    cal = await open_room(browser, link(server, room, server.token(room, "candidate", "Cal")))
    ivy = await open_room(browser, link(server, room, server.token(room, "interviewer", "Ivy")))
    pasted = "def solve(xs):\n    return sorted(xs)[::-1]\n"
    await cal.page.click(".editor .cm-content")
    await cal.page.evaluate(PASTE_JS, pasted)
    await converged(ivy, cal, "return sorted(xs)")
    await cal.page.evaluate("() => window.dispatchEvent(new Event('blur'))")
    # The interviewer's page pastes too, and reports nothing: only candidates' pages do.
    await ivy.page.click(".editor .cm-content")
    await ivy.page.evaluate(PASTE_JS, "# ok\n")

    async def signals() -> list[str]:
        return [e.type for e in await server.events(room) if e.type.startswith("signal.")]

    await eventually_equal(signals, ["signal.paste", "signal.blur"])
    (paste,) = await server.events(room, ("signal.paste",))
    assert paste.data["length"] == len(pasted)
    assert paste.data["hash"] == hashlib.sha256(pasted.encode()).hexdigest()
    assert paste.data["file"] == "main.py" and paste.data["offset"] == 0
    token = server.token(room, "reviewer")
    runs = httpx.get(f"{server.url}/api/rooms/{room}/provenance", params={"token": token})
    origins = {(r["name"], r["origin"]) for r in runs.json()["files"]["main.py"]}
    assert ("Cal", "paste") in origins
