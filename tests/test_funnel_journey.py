"""The whole funnel in one run, the way a company and its candidates use it: assessment files
loaded with the CLI, ten candidates invited from a CSV, each taking the MCQ screen in Chromium,
the hiring team advancing the best four from the candidate list page, two take-homes (one in
Chromium, one through a Yjs client) scored by hidden tests, a reviewer's scorecard in the replay
page, and the live follow-up opened from the list with the submitted files and history."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from browser import RoomPage, chromium
from conftest import ADMIN_KEY, ROOT, ServerProcess, eventually
from playwright.async_api import Browser, Page
from test_assessments import FIXTURES
from test_funnel import CORRECT, GOOD, HALF, ORDER, take_home

PIPELINE = "backend-engineer"


def clarityhire(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", *args], cwd=ROOT, env=server.env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


async def candidate_page(browser: Browser, invite_url: str) -> Page:
    """A candidate's own browser, on their invitation, after pressing Start."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(invite_url)
    await page.click("button[type=submit]")
    await page.locator("#connection[data-state=connected]").wait_for(timeout=15000)
    return page


async def take_mcq_in_browser(browser: Browser, invite_url: str, right: int) -> None:
    """The first ``right`` questions (in the test's order) answered correctly, the rest not."""
    page = await candidate_page(browser, invite_url)
    await page.locator("#mcq .question").first.wait_for()
    for i, qid in enumerate(ORDER):
        for index in CORRECT[qid] if i < right else [0]:
            await page.check(f"li[data-question='{qid}'] input[value='{index}']")
    await page.click("#round-submit")
    await page.locator("#round-state[data-state=ended]").wait_for()
    await page.context.close()


async def take_home_in_browser(browser: Browser, invite_url: str, solution: str) -> None:
    """Write the solution in the editor, run the visible tests, submit."""
    page = await candidate_page(browser, invite_url)
    room = RoomPage(page)
    assert "most frequent first" in await page.locator("#prompt").inner_text()
    await page.click(".tab[data-file='solution.py'] button")
    await page.click(".editor .cm-content")
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(solution)
    await eventually(lambda: True)  # let the edit reach the server before the run
    await page.click(".tab[data-file='test_visible.py'] button")
    await page.click("#run-file")
    await page.locator("#outputs", has_text="visible: ok").wait_for(timeout=60000)
    await room.screenshot("journey-takehome.png")
    await page.click("#round-submit")
    await page.locator("#round-state[data-state=ended]").wait_for()
    await page.context.close()


async def cells(page: Page, stage: str) -> dict[str, str]:
    """Candidate name to the text of their cell for ``stage`` in the candidate list."""
    rows = await page.evaluate(
        """(stage) => [...document.querySelectorAll('#candidates tbody tr')].map((tr) => [
             tr.querySelector('.name').textContent,
             tr.querySelector(`td[data-stage="${stage}"]`).textContent])""",
        stage,
    )
    return dict(rows)


async def until_cells(page: Page, stage: str, done: Callable[[dict[str, str]], bool]) -> None:
    """Reload the list until the stage's cells satisfy ``done`` (scoring runs in the
    background)."""
    for _ in range(120):
        await page.click("#reload")
        await page.locator("#candidates tbody tr").first.wait_for()
        if done(await cells(page, stage)):
            return
        await asyncio.sleep(1)
    raise AssertionError(f"{stage}: {await cells(page, stage)}")


async def test_the_whole_funnel(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = make_server(kernel_pool_size="1", run_timeout_seconds="30")
    loaded = clarityhire(server, "assessments", "load", str(FIXTURES), "--data-dir",
                         str(server.data_dir))  # fmt: skip
    assert f"loaded pipeline {PIPELINE}" in loaded.stdout
    sheet = tmp_path / "applicants.csv"
    sheet.write_text("name,email\n" + "".join(f"Person {i},p{i}@example.org\n" for i in range(10)))
    invited = clarityhire(server, "candidates", "invite", PIPELINE, str(sheet),
                          "--server", server.url, "--admin-key", ADMIN_KEY)  # fmt: skip
    links = {r["name"]: r["invite_url"] for r in csv.DictReader(io.StringIO(invited.stdout))}
    assert len(links) == 10

    async with chromium() as browser:
        for i in range(10):  # two each of 0, 20, 60, 80 and 100 points
            await take_mcq_in_browser(browser, links[f"Person {i}"], right=i % 5)

        team = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
        team.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await team.goto(f"{server.url}/pipelines/{PIPELINE}#key={ADMIN_KEY}")
        await until_cells(
            team, "screen", lambda c: len(c) == 10 and all("scored" in t for t in c.values())
        )
        assert "#key" not in team.url  # the key left the address bar
        screen = await cells(team, "screen")
        assert screen["Person 4"].startswith("scored 100")
        assert screen["Person 2"].startswith("scored 60")

        await team.click("button.advance[data-stage='screen']")
        invites = team.locator("#advance-output .invite-links li")
        await invites.nth(3).wait_for()
        takehome = {}
        for li in await invites.all():
            text = await li.inner_text()
            takehome[text.split(" <")[0]] = await li.locator("code").inner_text()
        # The percentile rule (60): the best 40% of ten, here two 100s and two 80s.
        assert sorted(takehome) == ["Person 3", "Person 4", "Person 8", "Person 9"]
        screen = await cells(team, "screen")
        assert screen["Person 9"].startswith("advanced")
        assert screen["Person 0"].startswith("not advanced")

        await take_home_in_browser(browser, takehome["Person 4"], GOOD)
        await take_home(server, takehome["Person 9"], HALF)
        await until_cells(team, "takehome", lambda c: c["Person 4"].startswith("scored 100")
                          and c["Person 9"].startswith("scored 50"))  # fmt: skip
        await RoomPage(team).screenshot("journey-candidates.png")

        # A reviewer opens the take-home's replay from the list and fills the scorecard.
        row = team.locator("#candidates tr", has_text="Person 4")
        replay_url = await row.locator("td[data-stage='takehome'] a.replay").get_attribute("href")
        assert replay_url is not None
        reviewer = await browser.new_context(viewport={"width": 1400, "height": 1000})
        review = await reviewer.new_page()
        await review.goto(replay_url)
        form = review.locator("#scorecard-form")
        await form.wait_for(timeout=30000)
        assert "Automatic pre-fill" in await review.locator("#prefill").inner_text()
        assert await form.locator("input[name=correctness][value='4']").is_checked()  # proposed
        for criterion, score in (("design", 3), ("testing", 2), ("communication", 3)):
            await form.locator(f"input[name={criterion}][value='{score}']").check()
        await review.fill("#scorecard-notes", "Clear counting; no tests of ties.")
        await form.locator("button[type=submit]").click()
        await review.locator("#scorecards li", has_text="no tests of ties").wait_for()
        await RoomPage(review).screenshot("journey-scorecard.png")
        await until_cells(team, "takehome", lambda c: "review 3/4" in c["Person 4"])

        # Advancing the take-home opens the live follow-up, already holding the work.
        await team.click("button.advance[data-stage='takehome']")
        join = team.locator("#advance-output .room-links li", has_text="Person 4").locator("a.join")
        await join.wait_for()
        live_url = await join.get_attribute("href")
        assert live_url is not None
        followup = await cells(team, "followup")
        assert followup["Person 4"].startswith("room ready") and followup["Person 0"] == ""
        interviewer = RoomPage(await (await browser.new_context()).new_page())
        await interviewer.page.goto(live_url)
        await interviewer.wait_connected()
        await interviewer.page.click(".tab[data-file='solution.py'] button")
        await eventually(lambda: True)
        assert (await interviewer.editor_text()).strip() == GOOD.strip()
        await interviewer.screenshot("journey-followup.png")

    live_room = live_url.split("/rooms/")[1].split("?")[0]
    takehome_room = replay_url.split("/rooms/")[1].split("/")[0]
    copied = await server.history(live_room)
    original = await server.history(takehome_room)
    assert len(original) > 2  # the candidate's typing, not just the seed
    assert [e.update for e in copied[: len(original)]] == [e.update for e in original]
