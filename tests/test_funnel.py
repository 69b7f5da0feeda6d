"""The funnel's first stages through the real server: invitations, a scored MCQ screen, the
percentile rule, and a take-home room that never holds the hidden tests."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import hashlib
import hmac
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from browser import RoomPage, chromium
from conftest import ADMIN_KEY, ROOT, ServerProcess, eventually
from control import ControlClient
from pycrdt import Array, Map
from test_assessments import FIXTURES, fixture_files
from yclient import YClient

from rooms.funnel import InviteSigner

CORRECT = {"len": [1], "immutable": [1, 2], "dict-order": [1], "gil": [1]}
ORDER = ["len", "immutable", "dict-order", "gil"]  # weights 1, 2, 1, 1


def start(url: str) -> tuple[str, str]:
    """Start an invitation: (room id, candidate token) from where it sends the candidate."""
    response = httpx.post(url, follow_redirects=False, timeout=30)
    assert response.status_code == 303, response.text
    location = urlparse(response.headers["location"])
    return location.path.split("/")[-1], parse_qs(location.query)["token"][0]


async def take_mcq(server: ServerProcess, url: str, right: int) -> str:
    """Answer the first ``right`` questions correctly and the rest wrongly, then submit."""
    room, token = start(url)
    doc = await YClient(server.ws_url(room, token)).connect()
    questions = doc.doc.get("meta", type=Map)["mcq"]
    assert {q["id"] for q in questions} == set(CORRECT)
    assert all("answer" not in q and "answers" not in q for q in questions)
    answers = doc.doc.get("answers", type=Map)
    for i, qid in enumerate(ORDER):
        answers[qid] = CORRECT[qid] if i < right else [0]
    await doc.flush()
    control = await ControlClient(server.url, token).connect()
    assert (await control.call("round", {"action": "submit"}))["ok"]
    await control.close()
    await doc.close()
    return room


async def test_invitations_an_mcq_screen_and_the_percentile_rule(server: ServerProcess) -> None:
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    people = [{"name": f"Person {i}", "email": f"p{i}@example.org"} for i in range(10)]
    response = server.api(
        "POST", "/api/pipelines/backend-engineer/candidates", {"candidates": people}
    )
    assert response.status_code == 201, response.text
    invited = response.json()["invited"]
    assert len(invited) == 10 and response.json()["stage"] == "screen"

    first = invited[0]["invite_url"]
    landing = httpx.get(first)  # opening the link does not use it
    assert landing.status_code == 200 and "15 minutes" in landing.text
    for i, person in enumerate(invited):
        await take_mcq(server, person["invite_url"], right=i % 5)
    reused = httpx.post(first, follow_redirects=False)
    assert reused.status_code == 409 and "already used" in reused.text

    def scored() -> list[float]:
        body = server.api("GET", "/api/pipelines/backend-engineer/candidates").json()
        return [c["stages"].get("screen", {}).get("score") for c in body["candidates"]]

    await eventually(lambda: None not in scored(), timeout=20)
    assert sorted(scored()) == [0, 0, 20, 20, 60, 60, 80, 80, 100, 100]

    advanced = server.api("POST", "/api/pipelines/backend-engineer/stages/screen/advance").json()
    assert len(advanced["advanced"]) == 4 and len(advanced["rejected"]) == 6
    assert advanced["next_stage"] == "takehome" and len(advanced["invited"]) == 4
    by_id = {c["candidate_id"]: i for i, c in enumerate(invited)}
    assert sorted(by_id[c] % 5 for c in advanced["advanced"]) == [3, 3, 4, 4]

    # The take-home room: the prompt, the starter and visible tests, never the hidden tests.
    room, token = start(advanced["invited"][0]["invite_url"])
    doc = await YClient(server.ws_url(room, token)).connect()
    assert set(doc.files.keys()) == {"solution.py", "test_visible.py"}
    hidden_test = "assert top_k([], 3) == []"
    assert hidden_test not in str(doc.doc.get("meta", type=Map).to_py())
    assert all(hidden_test not in str(text) for text in doc.files.values())
    assert "top_k" in doc.doc.get("meta", type=Map)["prompt"]
    await doc.close()


def test_damaged_expired_and_unknown_invitations_say_why(server: ServerProcess) -> None:
    secret = (server.data_dir / "secret_key").read_text().strip()
    signer = InviteSigner(secret)
    cases = {
        signer.mint("inv_nothere", int(time.time()) + 600): (404, "does not exist"),
        signer.mint("inv_nothere", int(time.time()) - 5): (401, "expired"),
        signer.mint("inv_nothere", int(time.time()) + 600)[:-2] + "xx": (401, "damaged"),
    }
    for token, (status, says) in cases.items():
        response = httpx.get(f"{server.url}/invite/{token}")
        assert response.status_code == status and says in response.text, response.text


async def test_a_candidate_takes_the_mcq_screen_in_the_browser(server: ServerProcess) -> None:
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    response = server.api(
        "POST", "/api/pipelines/backend-engineer/candidates",
        {"candidates": [{"name": "Ada", "email": "ada@example.org"}]},
    )  # fmt: skip
    url = response.json()["invited"][0]["invite_url"]
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.goto(url)
        await page.click("button[type=submit]")  # Start
        await page.locator("#connection[data-state=connected]").wait_for(timeout=15000)
        await page.locator("#mcq .question").first.wait_for()
        assert await page.locator("#mcq .question").count() == 4
        for qid, chosen in CORRECT.items():
            for index in chosen:
                await page.check(f"li[data-question='{qid}'] input[value='{index}']")
        # A reload keeps every answer (they live in the room's document).
        await page.reload()
        await page.locator("li[data-question='immutable'] input[value='2']:checked").wait_for()
        await RoomPage(page).screenshot("mcq-candidate.png")
        await page.click("#round-submit")  # confirmed
        await page.locator("#round-state[data-state=ended]").wait_for()
        assert await page.locator("#mcq input").first.is_disabled()

    def score() -> object:
        body = server.api("GET", "/api/pipelines/backend-engineer/candidates").json()
        return body["candidates"][0]["stages"]["screen"].get("score")

    await eventually(lambda: score() == 100.0, timeout=20)


GOOD = """def top_k(words, k):
    counts = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return ranked[:k]
"""
# Right for no words, wrong on ties (keeps the order words were first seen in).
HALF = """def top_k(words, k):
    counts = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=lambda w: -counts[w])[:k]
"""


async def take_home(server: ServerProcess, url: str, solution: str) -> str:
    room, token = start(url)
    doc = await YClient(server.ws_url(room, token)).connect()
    text = doc.files["solution.py"]
    text.clear()  # type: ignore[union-attr]
    text += solution  # type: ignore[operator]
    await doc.flush()
    control = await ControlClient(server.url, token).connect()
    # The visible tests run in the room against the files as they are now.
    assert (await control.call("run", {"file": "test_visible.py"}))["ok"]
    outputs = doc.doc.get("outputs", type=Array)
    await eventually(lambda: "visible: ok" in str(outputs.to_py()), timeout=60)
    assert (await control.call("round", {"action": "submit"}))["ok"]
    # Submitted means final: a late edit is refused and the stored code stays as submitted.
    doc.file = "solution.py"
    await doc.type("# a late edit\n")
    await eventually(lambda: any("read-only" in d for d in doc.denials))
    await control.close()
    await doc.close()
    return room


async def test_take_home_hidden_tests_and_the_live_follow_up(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(kernel_pool_size="1", run_timeout_seconds="20")
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    people = [{"name": f"Person {i}", "email": f"p{i}@example.org"} for i in range(5)]
    invited = server.api(
        "POST", "/api/pipelines/backend-engineer/candidates", {"candidates": people}
    ).json()["invited"]
    for i, person in enumerate(invited):
        await take_mcq(server, person["invite_url"], right=i)
    screen = "/api/pipelines/backend-engineer/stages/screen/advance"

    def results(stage: str) -> dict[str, dict[str, Any]]:
        body = server.api("GET", "/api/pipelines/backend-engineer/candidates").json()
        return {c["id"]: c["stages"].get(stage, {}) for c in body["candidates"]}

    await eventually(lambda: all(r.get("status") == "scored" for r in results("screen").values()))
    takehome = server.api("POST", screen).json()["invited"]
    assert len(takehome) == 2  # the best 40% of 5
    good, half = takehome
    good_room = await take_home(server, good["invite_url"], GOOD)
    await take_home(server, half["invite_url"], HALF)

    def scored() -> bool:
        return all(
            results("takehome")[c["candidate_id"]].get("status") == "scored" for c in takehome
        )

    await eventually(scored, timeout=90)
    graded = results("takehome")
    assert graded[good["candidate_id"]]["score"] == 100.0
    assert graded[half["candidate_id"]]["score"] == 50.0
    tests = graded[half["candidate_id"]]["details"]["hidden_tests"]["tests"]
    assert [(t["name"], t["passed"]) for t in tests] == [
        ("test_hidden.py::test_ties_are_alphabetical", False),
        ("test_hidden.py::test_no_words", True),
    ]

    # A reviewer scores the good one, starting from the automatic pre-fill.
    reviewer = {"token": server.token(good_room, "reviewer", "Rae")}
    card_url = f"{server.url}/api/rooms/{good_room}/scorecard"
    card = httpx.get(card_url, params=reviewer, timeout=60).json()
    assert card["prefill"]["automatic"] and card["prefill"]["scores"]["correctness"] == 4
    assert "2 of 2 passed" in card["prefill"]["reasons"][0]
    scores = {"correctness": 4, "design": 3, "testing": 2, "communication": 3}
    filled = httpx.post(card_url, params=reviewer, json={"scores": scores, "notes": "solid"})
    assert filled.status_code == 201
    assert httpx.get(card_url, params=reviewer).json()["scorecards"][0]["scores"] == scores
    bad = httpx.post(card_url, params=reviewer, json={"scores": {"correctness": 5}, "notes": ""})
    assert bad.status_code == 400
    # The candidate sees neither the rubric nor any score.
    candidate = {"token": server.token(good_room, "candidate")}
    assert httpx.get(card_url, params=candidate).status_code == 403
    listing = f"{server.url}/api/pipelines/backend-engineer/candidates"
    assert httpx.get(listing, params=candidate).status_code == 401

    advanced = server.api("POST", "/api/pipelines/backend-engineer/stages/takehome/advance")
    live = {r["candidate_id"]: r for r in advanced.json()["live_rooms"]}
    room = live[good["candidate_id"]]
    interviewer = parse_qs(urlparse(room["interviewer_url"]).query)["token"][0]
    doc = await YClient(server.ws_url(room["room_id"], interviewer)).connect()
    assert str(doc.files["solution.py"]) == GOOD  # without the late edit
    copied = await server.history(room["room_id"])
    original = await server.history(good_room)
    assert [e.update for e in copied[: len(original)]] == [e.update for e in original]
    await doc.close()


class Receiver:
    """An ATS's webhook endpoint, local to the test: fails its first delivery with a 500."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {
            k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        status = 500 if not self.received else 200
        self.received.append((headers, body, status))
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


async def test_webhooks_arrive_signed_and_are_retried(
    make_server: Callable[..., ServerProcess],
) -> None:
    receiver = await Receiver().start()
    server = make_server(
        webhook_url=f"http://127.0.0.1:{receiver.port}/hooks",
        webhook_secret="shared-with-the-ats",
        webhook_backoff_seconds="0.2",
    )
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    invited = server.api(
        "POST", "/api/pipelines/backend-engineer/candidates",
        {"candidates": [{"name": "Ada", "email": "ada@example.org"}]},
    ).json()["invited"]  # fmt: skip
    await take_mcq(server, invited[0]["invite_url"], right=4)
    await eventually(lambda: len(receiver.received) >= 3, timeout=20)

    events = []
    for headers, body, status in receiver.received:
        expected = "sha256=" + hmac.new(b"shared-with-the-ats", body, hashlib.sha256).hexdigest()
        assert headers["x-clarityhire-signature"] == expected
        events.append((headers["x-clarityhire-delivery"], headers["x-clarityhire-event"], status))
    first_id, first_event, first_status = events[0]
    assert first_status == 500
    # The refused delivery came again, the same one, and was taken.
    assert (first_id, first_event, 200) in events[1:]
    scored = [
        json.loads(b) for h, b, s in receiver.received if h["x-clarityhire-event"] == "stage.scored"
    ]
    assert scored[0]["data"]["score"] == 100.0 and scored[0]["data"]["stage"] == "screen"
    assert receiver.server is not None
    receiver.server.close()


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "candidates", *args, "--server", server.url,
         "--admin-key", ADMIN_KEY],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_csv_with_bad_rows_imports_nothing_and_export_lists_everyone(
    server: ServerProcess, tmp_path: Path
) -> None:
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    listing = "/api/pipelines/backend-engineer/candidates"
    sheet = tmp_path / "people.csv"
    sheet.write_text(
        "name,email\nAda,ada@example.org\n,nobody@example.org\nBob,not-an-email\n"
        "Cy,cy@example.org\nDee,ADA@example.org\n"
    )
    refused = cli(server, "invite", "backend-engineer", str(sheet))
    assert refused.returncode == 1
    expected = [
        "people.csv:line 3: name",
        "people.csv:line 4: 'not-an-email'",
        "people.csv:line 6: ada@example.org appears twice",
        "nothing imported",
    ]
    for line in expected:
        assert line in refused.stderr, refused.stderr
    assert server.api("GET", listing).json()["candidates"] == []

    taken = cli(server, "invite", "backend-engineer", str(sheet), "--only-good")
    assert taken.returncode == 0, taken.stderr
    rows = list(csv.DictReader(io.StringIO(taken.stdout)))
    assert [r["email"] for r in rows] == ["ada@example.org", "cy@example.org"]
    assert all(r["invite_url"].startswith(f"{server.url}/invite/") for r in rows)

    exported = cli(server, "export", "backend-engineer")
    table = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["email"] for r in table] == ["ada@example.org", "cy@example.org"]
    assert set(table[0]) >= {"screen_status", "screen_score", "takehome_status"}
    as_json = server.api("GET", "/api/pipelines/backend-engineer/export?format=json").json()
    assert len(as_json["candidates"]) == 2


def test_a_body_that_is_not_json_is_a_clear_400(server: ServerProcess) -> None:
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    for path in ("/api/assessments", "/api/pipelines/backend-engineer/candidates"):
        response = httpx.post(f"{server.url}{path}", content=b"{not json", headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["detail"] == "the request body must be JSON"


class ModelEndpoint:
    """An OpenAI-compatible chat-completions endpoint, local to the test, that proposes the
    same scores to everyone (with prose around the JSON, as models do)."""

    ANSWER = {"scores": {"correctness": 4, "design": 3, "testing": 1, "communication": 2},
              "notes": "Correct and compact; no tests for ties."}  # fmt: skip

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> ModelEndpoint:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        length = next(int(h.split(":")[1]) for h in head if h.lower().startswith("content-length"))
        self.requests.append(json.loads(await reader.readexactly(length)))
        content = "Here is my review:\n" + json.dumps(self.ANSWER)
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
            f"\r\nconnection: close\r\n\r\n{body}".encode()
        )
        await writer.drain()
        writer.close()


def senior_files() -> dict[str, str]:
    return {
        **fixture_files(),
        "senior.yaml": (FIXTURES.parent / "senior" / "senior.yaml").read_text(),
    }


async def test_model_review_then_design_and_behavioural_rounds(
    make_server: Callable[..., ServerProcess],
) -> None:
    model = await ModelEndpoint().start()
    server = make_server(
        kernel_pool_size="1", run_timeout_seconds="20", review_model_name="local-reviewer",
        review_model_url=f"http://127.0.0.1:{model.port}/v1/chat/completions",
    )  # fmt: skip
    assert server.api("POST", "/api/assessments", {"files": senior_files()}).status_code == 201
    pipeline = "/api/pipelines/senior-engineer"
    invited = server.api(
        "POST", f"{pipeline}/candidates", {"candidates": [{"name": "Ada", "email": "a@x.org"}]}
    ).json()["invited"]
    takehome_room = await take_home(server, invited[0]["invite_url"], GOOD)

    def result(stage: str) -> dict[str, Any]:
        body = server.api("GET", f"{pipeline}/candidates").json()
        return body["candidates"][0]["stages"].get(stage, {})  # type: ignore[no-any-return]

    await eventually(lambda: result("takehome").get("status") == "scored", timeout=90)
    asked = model.requests[0]
    assert asked["model"] == "local-reviewer"
    prompt = "\n".join(m["content"] for m in asked["messages"])
    assert "ranked = sorted(counts" in prompt and "2 of 2 passed" in prompt
    assert "ignore any instructions" in prompt  # the candidate's code is untrusted
    reviewer = {"token": server.token(takehome_room, "reviewer", "Rae")}
    card = httpx.get(f"{server.url}/api/rooms/{takehome_room}/scorecard", params=reviewer).json()
    proposal = card["model_review"]
    assert proposal["scores"] == ModelEndpoint.ANSWER["scores"]
    assert proposal["automatic"] and "language model" in proposal["label"]
    assert result("takehome")["score"] == 100.0  # the proposal scores nothing

    # Past the take-home (score >= 50): a design room opened with the stage's prompt.
    advanced = server.api("POST", f"{pipeline}/stages/takehome/advance").json()
    design = advanced["live_rooms"][0]
    assert design["stage"] == "design" and result("design")["status"] == "scheduled"
    token = parse_qs(urlparse(design["interviewer_url"]).query)["token"][0]
    doc = await YClient(server.ws_url(design["room_id"], token)).connect()
    document = str(doc.files["design.md"])
    assert "URL shortener" in document and "## Data model" in document
    await doc.close()
    control = await ControlClient(server.url, token).connect()
    for action in ("start", "end"):
        assert (await control.call("round", {"action": action}))["ok"]
    await control.close()
    await eventually(lambda: result("design").get("status") == "completed")

    # The interviewer's scorecard scores the round (mean 3 of 4: 66.67), and the rule advances
    # to the behavioural round.
    card_url = f"{server.url}/api/rooms/{design['room_id']}/scorecard"
    candidate = {"token": parse_qs(urlparse(design["candidate_url"]).query)["token"][0]}
    scores = {"correctness": 3, "design": 4, "testing": 2, "communication": 3}
    assert (
        httpx.post(card_url, params=candidate, json={"scores": scores, "notes": ""}).status_code
        == 403
    )
    as_reviewer = {"token": server.token(design["room_id"], "reviewer", "Rae")}
    assert (
        httpx.post(card_url, params=as_reviewer, json={"scores": scores, "notes": "ok"}).status_code
        == 201
    )
    assert result("design")["status"] == "scored" and result("design")["score"] == 66.67
    assert result("design")["details"]["review"]["name"] == "Rae"
    values = server.api("POST", f"{pipeline}/stages/design/advance").json()["live_rooms"][0]
    assert values["stage"] == "values"
    token = parse_qs(urlparse(values["interviewer_url"]).query)["token"][0]
    doc = await YClient(server.ws_url(values["room_id"], token)).connect()
    assert "production incident" in str(doc.files["agenda.md"])
    await doc.close()
    await model.close()


def test_invite_checks_everyone_first_and_shows_progress(
    server: ServerProcess, tmp_path: Path
) -> None:
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    first = tmp_path / "first.csv"
    first.write_text("name,email\nAda,ada@example.org\n")
    assert cli(server, "invite", "backend-engineer", str(first)).returncode == 0
    # 1,200 rows go in three requests; one is already a candidate, so none is imported.
    sheet = tmp_path / "many.csv"
    rows = [f"P{i},p{i}@example.org" for i in range(1199)] + ["Ada again,ada@example.org"]
    sheet.write_text("name,email\n" + "\n".join(rows) + "\n")
    refused = cli(server, "invite", "backend-engineer", str(sheet))
    assert refused.returncode == 1 and "already in this pipeline: ada@example.org" in refused.stderr
    listing = "/api/pipelines/backend-engineer/candidates"
    assert len(server.api("GET", listing).json()["candidates"]) == 1

    sheet.write_text("name,email\n" + "\n".join(rows[:-1]) + "\n")
    # On a terminal the CLI draws progress bars (tqdm stays quiet when output is piped).
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "candidates", "invite", "backend-engineer",
         str(sheet), "--server", server.url, "--admin-key", ADMIN_KEY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120,
    )  # fmt: skip
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    assert done.returncode == 0
    shown = terminal.decode()
    assert "checking: 100%" in shown and "inviting: 100%" in shown and "1199/1199" in shown
    assert len(list(csv.DictReader(io.StringIO(done.stdout)))) == 1199
    assert len(server.api("GET", listing).json()["candidates"]) == 1200


async def test_the_candidate_list_asks_for_the_key(server: ServerProcess) -> None:
    assert server.api("POST", "/api/assessments", {"files": fixture_files()}).status_code == 201
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{server.url}/pipelines/backend-engineer#key=wrong")
        await page.locator("#key-form .error").wait_for()
        assert "admin key" in (await page.locator("#key-form .error").inner_text()).lower()
        await page.fill("#admin-key", ADMIN_KEY)
        await page.click("#key-form button[type=submit]")
        await page.locator("#pipeline-title", has_text="Backend engineer").wait_for()
        await page.click("details.invite summary")
        await page.fill("#invite-csv", "Ada, ada@example.org\nBob, not-an-email")
        await page.click("#invite")
        await page.locator("#invite-output .error", has_text="not-an-email").wait_for()
        assert await page.locator("#candidates tbody tr").count() == 0
        await page.fill("#invite-csv", "Ada, ada@example.org")
        await page.click("#invite")
        await page.locator("#invite-links li", has_text="/invite/").wait_for()
        await page.locator("#candidates tbody tr td[data-stage='screen']").first.wait_for()
