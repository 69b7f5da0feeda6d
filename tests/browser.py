"""Debian's Chromium driven by Playwright, and a TCP proxy a test can cut to take a page
offline. Chromium is never downloaded: `make test` installs the Debian package."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("CLARITYHIRE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Calls in tests run where only loopback exists (see tests/test_media.py).
    "--allow-loopback-in-peer-connection",
]
# Screenshots and other files a person may want to look at after a run (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

# The editor's text as the participant sees it, without the remote cursors' name labels that
# y-codemirror.next draws inside the lines.
EDITOR_TEXT_JS = """() => Array.from(document.querySelectorAll('.editor .cm-line')).map((line) => {
  const copy = line.cloneNode(true)
  copy.querySelectorAll('.cm-ySelectionCaret').forEach((n) => n.remove())
  return copy.textContent.replace(/\\u2060/g, '')
}).join('\\n')"""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    # Chromium writes into ~/.config and ~/.cache even with a fresh profile.
    with tempfile.TemporaryDirectory(prefix="clarityhire-chromium-") as home:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS, env={**os.environ, "HOME": home}
            )
            try:
                yield browser
            finally:
                await browser.close()


@dataclass
class RoomPage:
    """One participant's page, with every script error it raised."""

    page: Page
    errors: list[str] = field(default_factory=list)

    async def editor_text(self) -> str:
        return str(await self.page.evaluate(EDITOR_TEXT_JS))

    async def type_at_end(self, text: str) -> None:
        await self.page.click(".editor .cm-content")
        await self.page.keyboard.press("Control+End")
        await self.page.keyboard.type(text)

    async def wait_connected(self) -> None:
        await self.page.wait_for_selector("#connection[data-state=connected]", timeout=15000)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path))
        return path


async def open_room(browser: Browser, url: str) -> RoomPage:
    """A fresh browser context (a separate person) on ``url``, connected to the room."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    room = RoomPage(page)
    page.on("pageerror", lambda error: room.errors.append(str(error)))
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(url)
    await room.wait_connected()
    return room


class CuttableProxy:
    """A TCP proxy to the server that a test can cut (every connection dropped, new ones
    refused) and restore: the page's network going away and coming back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.transport.abort()
