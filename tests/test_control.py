"""The control plane over Socket.IO: presence, chat, round lifecycle, notes, signals."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import Callable

import pytest
import socketio
from conftest import ROOT, ServerProcess, eventually
from control import ControlClient
from pycrdt import Text
from yclient import YClient

from rooms.document import files_of, load_doc
from rooms.presence import colour_of


def by_name(client: ControlClient) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in client.presence()}


def people(client: ControlClient) -> dict[str, int]:
    return {p["name"]: p["connections"] for p in client.presence()}


async def test_presence_chat_history_and_reconnects(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(presence_grace_seconds="1")
    room = server.create_room()
    ivy = await ControlClient(server.url, server.token(room, "interviewer", "Ivy")).connect()
    cal_token = server.token(room, "candidate", "Cal")
    cal = await ControlClient(server.url, cal_token).connect()
    await eventually(lambda: people(ivy) == {"Ivy": 1, "Cal": 1})
    assert {p["name"] for p in cal.welcome["presence"]} == {"Ivy", "Cal"}
    colours = {p["name"]: p["colour"] for p in ivy.presence()}
    assert colours == {name: colour_of(p["id"]) for name, p in by_name(ivy).items()}
    assert all(len(c) == 7 and c.startswith("#") for c in colours.values())

    assert (await cal.call("chat", {"text": "hello!"})) == {"ok": True}
    await ivy.wait_for("chat")
    assert ivy.events["chat"][0]["text"] == "hello!"
    assert ivy.events["chat"][0]["name"] == "Cal"

    # A second tab of the same person counts connections, not people.
    cal_tab = await ControlClient(server.url, cal_token).connect()
    await eventually(lambda: people(ivy) == {"Ivy": 1, "Cal": 2})
    await cal_tab.close()
    await eventually(lambda: people(ivy) == {"Ivy": 1, "Cal": 1})

    # A late joiner receives the history.
    olive = await ControlClient(server.url, server.token(room, "observer", "Olive")).connect()
    assert [m["text"] for m in olive.welcome["chat"]] == ["hello!"]
    assert olive.welcome["chat"][0]["at"] > 0

    # A reconnect within the grace period is not a leave.
    await cal.close()
    cal = await ControlClient(server.url, cal_token).connect()
    await asyncio.sleep(1.5)
    assert all("Cal" in {p["name"] for p in e["participants"]} for e in ivy.events["presence"][-3:])
    joins = [e for e in await server.events(room, ("join", "leave")) if e.data["name"] == "Cal"]
    assert [e.type for e in joins] == ["join"]

    # A dropped connection (the process dies) leaves presence after the grace period.
    dropped = subprocess.Popen(
        [sys.executable, "-c", DROPPING_CLIENT, server.url, server.token(room, "candidate", "Dee")],
        cwd=ROOT / "tests",
        stdout=subprocess.PIPE,
    )
    assert dropped.stdout is not None
    assert dropped.stdout.readline().strip() == b"connected"
    await eventually(lambda: "Dee" in people(ivy))
    dropped.kill()
    dropped.wait()
    dropped.stdout.close()
    await eventually(lambda: "Dee" not in people(ivy), timeout=4)
    leaves = await server.events(room, ("leave",))
    assert [e.data["name"] for e in leaves] == ["Dee"]
    for client in (ivy, cal, olive):
        await client.close()


DROPPING_CLIENT = """
import asyncio, sys
from control import ControlClient
from pycrdt import Text
async def main():
    await ControlClient(sys.argv[1], sys.argv[2]).connect()
    print("connected", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_live_round_is_run_by_the_interviewer(server: ServerProcess) -> None:
    room = server.create_room(files={"main.py": "x = 1\n"})
    cand_token = server.token(room, "candidate", "Cal")
    cal = await ControlClient(server.url, cand_token).connect()
    assert cal.welcome["round"]["state"] == "scheduled"
    ivy = await ControlClient(server.url, server.token(room, "interviewer", "Ivy")).connect()
    assert ivy.welcome["round"]["state"] == "open"  # the interviewer's arrival opens it

    refused = await cal.call("round", {"action": "start"})
    assert refused == {"ok": False, "reason": "only the interviewer starts a live round"}
    assert cal.events["error"][-1] == {"event": "round", "reason": refused["reason"]}
    assert (await ivy.call("round", {"action": "start"}))["round"]["state"] == "live"
    await cal.wait_for("round", count=2)
    assert cal.events["round"][-1]["state"] == "live"
    assert (await cal.call("round", {"action": "end"}))["ok"] is False

    editor = await YClient(server.ws_url(room, cand_token)).connect()
    await editor.type("y = 2\n")
    await eventually(lambda: server.api("GET", f"/api/rooms/{room}").json()["live"])
    ended = await ivy.call("round", {"action": "end"})
    assert ended["round"]["state"] == "ended" and ended["round"]["ended_reason"] == "interviewer"
    await cal.wait_for("round", count=3)
    assert cal.events["round"][-1]["state"] == "ended"

    # Frozen for the candidate: the edit is refused with a reason and changes nothing.
    await editor.type("evil = 3\n")
    await eventually(lambda: editor.denials == ["the round has ended: the document is read-only"])
    assert editor.connected
    watcher = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    assert watcher.text == "x = 1\ny = 2\n"
    # ...also after reconnecting, when the provider re-sends it in its sync step 2.
    await editor.close()
    again = YClient(server.ws_url(room, cand_token))
    again.doc.apply_update(editor.doc.get_update())
    await again.connect()
    await eventually(lambda: len(again.denials) == 1)
    assert again.text == "x = 1\ny = 2\nevil = 3\n"  # only the candidate's own copy
    fresh = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    assert fresh.text == "x = 1\ny = 2\n"

    # The end is on the timeline with a stamp of the stored final state.
    [end] = await server.events(room, ("round.ended",))
    store = server.store()
    await store.start()
    snapshot = (await store.load(room)).snapshot
    await store.close()
    assert snapshot is not None and snapshot.seq == end.data["final_seq"]
    assert hashlib.sha256(snapshot.state).hexdigest() == end.data["final_sha256"]
    assert files_of(load_doc([snapshot.state]))["main.py"] == "x = 1\ny = 2\n"
    assert (await ivy.call("round", {"action": "end"})) == {
        "ok": False,
        "reason": "the round has already ended",
    }
    for c in (editor, again, watcher, fresh):
        await c.close()
    await cal.close()
    await ivy.close()


async def test_solo_test_submits_itself_at_the_deadline(server: ServerProcess) -> None:
    room = server.create_room(kind="solo", time_limit_seconds=2, files={"main.py": ""})
    token = server.token(room, "candidate", "Cal")
    cal = await ControlClient(server.url, token).connect()
    started = cal.welcome["round"]
    assert started["state"] == "live"
    assert started["deadline"] - started["started_at"] == 2000
    editor = await YClient(server.ws_url(room, token)).connect()
    await editor.type("answer = 42\n")
    await cal.close()  # the candidate walks away; the server keeps time alone
    await editor.close()

    await eventually(
        lambda: server.api("GET", f"/api/rooms/{room}").json()["round"]["state"] == "ended",
        timeout=6,
    )
    round_ = server.api("GET", f"/api/rooms/{room}").json()["round"]
    assert round_["ended_reason"] == "deadline"
    assert round_["ended_at"] >= started["deadline"]
    [end] = await server.events(room, ("round.ended",))
    store = server.store()
    await store.start()
    snapshot = (await store.load(room)).snapshot
    await store.close()
    assert snapshot is not None
    assert hashlib.sha256(snapshot.state).hexdigest() == end.data["final_sha256"]
    assert files_of(load_doc([snapshot.state]))["main.py"] == "answer = 42\n"

    late = await YClient(server.ws_url(room, token)).connect()
    await late.type("more = 1\n")
    await eventually(lambda: len(late.denials) == 1)
    await late.close()


async def test_candidate_may_submit_early_and_only_once(server: ServerProcess) -> None:
    room = server.create_room(kind="solo", files={"main.py": ""})
    assert server.api("GET", f"/api/rooms/{room}").json()["time_limit_seconds"] == 5400
    cal = await ControlClient(server.url, server.token(room, "candidate")).connect()
    ivy = await ControlClient(server.url, server.token(room, "interviewer")).connect()
    assert (await ivy.call("round", {"action": "submit"}))["ok"] is False
    submitted = await cal.call("round", {"action": "submit"})
    assert submitted["round"]["ended_reason"] == "candidate"
    assert (await cal.call("round", {"action": "submit"}))["ok"] is False
    await cal.close()
    await ivy.close()


async def test_notes_never_reach_a_candidate(server: ServerProcess) -> None:
    room = server.create_room(files={"main.py": "pass\n"})
    cand_token = server.token(room, "candidate", "Cal")
    for role in ("candidate", "observer"):
        intruder = YClient(server.notes_url(room, server.token(room, role)))
        await intruder.connect(wait_synced=False)
        code, reason = await intruder.wait_closed()
        assert (code, reason) == (4403, "the notes are private to the interviewers")

    editor = await YClient(server.ws_url(room, cand_token)).connect()
    cal = await ControlClient(server.url, cand_token).connect()
    ivy = await ControlClient(server.url, server.token(room, "interviewer")).connect()
    await ivy.call("round", {"action": "start"})
    notes = YClient(server.notes_url(room, server.token(room, "interviewer")), file="notes")
    await notes.connect()
    notes.files["notes"] = Text()
    await notes.flush()
    await notes.type("SECRET: weak on recursion")
    await notes.send_awareness({"user": {"name": "Ivy"}, "note": "SECRET cursor"})
    reviewer = YClient(server.notes_url(room, server.token(room, "reviewer")), file="notes")
    await reviewer.connect()
    await eventually(lambda: reviewer.text == "SECRET: weak on recursion")
    await editor.type("# thinking\n")
    await asyncio.sleep(0.3)

    assert not any(b"SECRET" in frame for frame in editor.frames)
    assert "SECRET" not in repr(dict(cal.events))
    assert files_of(editor.doc) == {"main.py": "pass\n# thinking\n"}
    for c in (notes, reviewer, editor):
        await c.close()
    await cal.close()
    await ivy.close()


async def test_integrity_signals_are_stamped_and_validated(server: ServerProcess) -> None:
    room = server.create_room(kind="solo")
    cal = await ControlClient(server.url, server.token(room, "candidate")).connect()
    good = [
        {"type": "paste", "length": 120, "hash": "ab" * 16, "file": "main.py", "offset": 4},
        {"type": "copy", "length": 3},
        {"type": "blur"},
        {"type": "visibility", "state": "hidden", "client_at": 1_700_000_000_000},
        {"type": "fullscreen_exit"},
    ]
    for signal in good:
        assert (await cal.call("signal", signal)) == {"ok": True}
    bad = {
        "unknown type": {"type": "screenshot"},
        "missing field": {"type": "paste", "length": 1, "file": "main.py", "offset": 0},
        "wrong type": {"type": "paste", "length": "1", "hash": "ab" * 8, "file": "a", "offset": 0},
        "extra field": {"type": "blur", "text": "the pasted secret"},
        "bad choice": {"type": "visibility", "state": "minimised"},
        "negative": {"type": "copy", "length": -5},
        "oversized": {"type": "copy", "length": 1, "file": "x" * 5000},
        "not an object": "paste",
    }
    for name, signal in bad.items():
        answer = await cal.call("signal", signal)
        assert answer["ok"] is False, name
    assert len(cal.events["error"]) == len(bad)
    assert "exceeds the 4096 limit" in cal.events["error"][-2]["reason"]

    stored = await server.events(room)
    signals = [e for e in stored if e.type.startswith("signal.")]
    assert [e.type for e in signals] == [
        "signal.paste", "signal.copy", "signal.blur", "signal.visibility", "signal.fullscreen_exit"
    ]  # fmt: skip
    assert signals[0].data == {"length": 120, "hash": "ab" * 16, "file": "main.py", "offset": 4}
    assert signals[3].data["client_at"] == 1_700_000_000_000
    assert all(abs(e.at_us / 1e6 - signals[0].at_us / 1e6) < 30 for e in signals)
    assert all("secret" not in str(e.data) for e in stored)

    ivy = await ControlClient(server.url, server.token(room, "interviewer")).connect()
    assert (await ivy.call("signal", good[2]))["reason"] == "role interviewer cannot send 'signal'"
    assert (await ivy.call("teleport", {}))["reason"] == "unknown event 'teleport'"
    await cal.close()
    await ivy.close()


async def test_floods_are_limited_and_abuse_disconnects(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(abuse_refusals_per_minute="10")
    room = server.create_room()
    spammer = await ControlClient(server.url, server.token(room, "candidate", "Spam")).connect()
    ivy = await ControlClient(server.url, server.token(room, "interviewer", "Ivy")).connect()
    answers = [await spammer.call("chat", {"text": f"buy now {i}"}) for i in range(8)]
    assert [a["ok"] for a in answers[:5]] == [True] * 5
    assert answers[5]["reason"] == "too many 'chat' events: slow down"
    for _ in range(12):  # each one refused: more than 10 refusals within a minute
        if spammer.sio.connected:
            await spammer.emit("nonsense", {})
            await asyncio.sleep(0.02)
    await eventually(lambda: not spammer.sio.connected)
    assert spammer.events["error"][-1]["reason"] == "unknown event 'nonsense'"
    # Only the abuser is gone; the room and everyone else carry on.
    assert (await ivy.call("chat", {"text": "still here"})) == {"ok": True}
    assert len(await server.events(room, ("chat",))) == 6
    await ivy.close()


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda s, room: None, "missing token"),
        (lambda s, room: "garbage.token", "invalid token"),
        (lambda s, room: s.token(room, ttl=1), "token expired"),
    ],
)
async def test_control_connect_needs_a_valid_token(
    server: ServerProcess,
    make_token: Callable[[ServerProcess, str], str | None],
    reason: str,
) -> None:
    room = server.create_room()
    token = make_token(server, room)
    if token is not None and reason == "token expired":
        await asyncio.sleep(1.1)
    client = socketio.AsyncClient(reconnection=False)
    errors: list[object] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, auth={"token": token}, transports=["websocket"])
    assert errors and reason in str(errors[0])
