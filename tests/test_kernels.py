"""Running code in a room's kernel, seen by every participant through the synced document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ServerProcess, eventually
from control import ControlClient
from pycrdt import Array, Map
from yclient import YClient

PNG_CODE = """
import base64
from IPython.display import Image, display
png = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
display(Image(data=png))
"""


def records(client: YClient) -> list[dict[str, Any]]:
    outputs = client.doc.get("outputs", type=Array)
    result = []
    for record in outputs:
        assert isinstance(record, Map)
        plain = {k: v for k, v in record.items() if k != "outputs"}
        plain["outputs"] = [dict(item) for item in record["outputs"]]
        result.append(plain)
    return result


def finished(client: YClient, count: int) -> bool:
    runs = records(client)
    return len(runs) >= count and all(r["status"] != "running" for r in runs[:count])


def stdout(record: dict[str, Any]) -> str:
    return "".join(o["text"] for o in record["outputs"] if o["type"] == "stream")


@pytest.fixture
def kernel_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(kernel_pool_size="1", run_timeout_seconds="3", run_output_max_bytes="100000")


async def test_both_participants_see_a_run_stream_in(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": "for i in range(3):\n    print('line', i)\n"})
    ivy_token = server.token(room, "interviewer", "Ivy")
    cal_token = server.token(room, "candidate", "Cal")
    ivy_doc = await YClient(server.ws_url(room, ivy_token)).connect()
    cal_doc = await YClient(server.ws_url(room, cal_token)).connect()
    cal = await ControlClient(server.url, cal_token).connect()
    ivy = await ControlClient(server.url, ivy_token).connect()

    assert (await cal.call("run", {"file": "main.py"})) == {"ok": True}
    for doc in (ivy_doc, cal_doc):
        await eventually(lambda d=doc: finished(d, 1), timeout=30)
    [run] = records(ivy_doc)
    assert run["status"] == "ok" and run["author_name"] == "Cal" and run["file"] == "main.py"
    assert stdout(run) == "line 0\nline 1\nline 2\n"
    assert run["ended_at"] >= run["started_at"] > 0
    assert records(cal_doc) == records(ivy_doc)

    # A selection, with a rich output: the image arrives as image/png.
    await cal.call("run", {"file": "main.py", "code": PNG_CODE})
    await eventually(lambda: finished(ivy_doc, 2), timeout=30)
    image = records(ivy_doc)[1]["outputs"][0]
    assert image["type"] == "display_data" and image["data"]["image/png"].startswith("iVBOR")

    # Errors come with their traceback; state persists between runs like a REPL, whoever runs.
    await ivy.call("run", {"file": "main.py", "code": "x = 41\n1/0"})
    await eventually(lambda: finished(ivy_doc, 3), timeout=30)
    error = records(ivy_doc)[2]
    assert error["status"] == "error" and error["outputs"][0]["ename"] == "ZeroDivisionError"
    await cal.call("run", {"file": "main.py", "code": "print(x + 1)"})
    await eventually(lambda: finished(ivy_doc, 4), timeout=30)
    assert stdout(records(ivy_doc)[3]) == "42\n"

    # The outputs array is part of the recording (once the group commit has run).
    await asyncio.sleep(0.3)
    log = await server.history(room)
    assert any(e.author == "system" and b"ZeroDivisionError" in e.update for e in log)
    for c in (ivy_doc, cal_doc):
        await c.close()
    await cal.close()
    await ivy.close()


async def test_limits_stop_runs_and_the_next_run_works(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": ""})
    token = server.token(room, "candidate", "Cal")
    doc = await YClient(server.ws_url(room, token)).connect()
    cal = await ControlClient(server.url, token).connect()

    async def run(code: str, index: int) -> dict[str, Any]:
        answer = await cal.call("run", {"file": "main.py", "code": code})
        assert answer == {"ok": True}
        await eventually(lambda: finished(doc, index + 1), timeout=40)
        return records(doc)[index]

    spin = await run("while True: pass", 0)
    assert spin["status"] == "timeout" and "3 s time limit" in spin["note"]
    assert stdout(await run("print('next')", 1)) == "next\n"

    flood = await run("print('x' * 10_000_000)", 2)
    assert "output truncated at 100000 bytes" in flood["note"]
    assert "[output truncated at 100000 bytes]" in stdout(flood)
    assert len(stdout(flood)) < 110_000

    died = await run("import os; os._exit(1)", 3)
    assert died["status"] == "killed" and "the kernel died" in died["note"]
    assert stdout(await run("print('fresh')", 4)) == "fresh\n"

    bomb = await run("b = bytearray(8 * 1024**3)", 5)
    assert bomb["status"] in ("error", "killed")
    assert stdout(await run("print('still fine')", 6)) == "still fine\n"

    crash = await run("import ctypes; ctypes.string_at(0)", 7)  # a segmentation fault
    assert crash["status"] == "killed" and "the kernel died" in crash["note"]
    assert stdout(await run("print('after the crash')", 8)) == "after the crash\n"
    await doc.close()
    await cal.close()


async def test_input_goes_to_the_participant_who_ran(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": "name = input('name? ')\nprint('hi', name)\n"})
    cal_token = server.token(room, "candidate", "Cal")
    doc = await YClient(server.ws_url(room, cal_token)).connect()
    cal = await ControlClient(server.url, cal_token).connect()
    ivy = await ControlClient(server.url, server.token(room, "interviewer", "Ivy")).connect()
    await cal.call("run", {"file": "main.py"})
    [request] = await cal.wait_for("input_request", timeout=20)
    assert request == {"prompt": "name? ", "password": False}
    assert "input_request" not in ivy.events
    refused = await ivy.call("input", {"value": "Mallory"})
    assert refused["reason"] == "the run is waiting for the participant who started it"
    assert (await cal.call("input", {"value": "Ada"})) == {"ok": True}
    await eventually(lambda: finished(doc, 1), timeout=20)
    assert stdout(records(doc)[0]) == "hi Ada\n"
    await doc.close()
    await cal.close()
    await ivy.close()


async def test_bash_room_and_who_may_run(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(language="bash", files={"run.sh": "echo hello from $0 | wc -w\n"})
    doc = await YClient(server.ws_url(room, server.token(room, "interviewer")), "run.sh").connect()
    olive = await ControlClient(server.url, server.token(room, "observer", "Olive")).connect()
    refused = await olive.call("run", {"file": "run.sh"})
    assert refused["reason"] == "role observer cannot send 'run'"
    ivy = await ControlClient(server.url, server.token(room, "interviewer")).connect()
    missing = await ivy.call("run", {"file": "nope.sh"})
    assert missing["reason"] == "no file 'nope.sh' in this room"
    await ivy.call("run", {"file": "run.sh"})
    await eventually(lambda: finished(doc, 1), timeout=30)
    assert stdout(records(doc)[0]).strip() == "3"
    await doc.close()
    await olive.close()
    await ivy.close()


async def test_outputs_are_the_servers_alone(kernel_server: ServerProcess) -> None:
    """A candidate cannot forge an execution record through the document."""
    server = kernel_server
    room = server.create_room(files={"main.py": ""})
    forger = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    outputs = forger.doc.get("outputs", type=Array)
    outputs.append(Map({"id": "fake", "status": "ok", "author_name": "Cal"}))
    await forger.flush()
    code, reason = await forger.wait_closed()
    assert code == 4403 and "outputs are written by the server" in (reason or "")
    watcher = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    await asyncio.sleep(0.1)
    assert records(watcher) == []
    await watcher.close()


async def test_interrupt_and_restart(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": ""})
    token = server.token(room, "interviewer", "Ivy")
    doc = await YClient(server.ws_url(room, token)).connect()
    ivy = await ControlClient(server.url, token).connect()
    code = "state = 'kept'\nprint('started', flush=True)\nimport time\ntime.sleep(60)"
    await ivy.call("run", {"file": "main.py", "code": code})
    await eventually(lambda: len(records(doc)) == 1 and stdout(records(doc)[0]) == "started\n")
    assert (await ivy.call("interrupt", {})) == {"ok": True, "interrupted": True}
    await eventually(lambda: finished(doc, 1), timeout=20)
    stopped = records(doc)[0]
    assert stopped["status"] == "interrupted" and "interrupted by" in stopped["note"]
    await ivy.call("run", {"file": "main.py", "code": "print(state)"})
    await eventually(lambda: finished(doc, 2), timeout=20)
    assert stdout(records(doc)[1]) == "kept\n"  # an interrupt keeps the kernel's state
    assert (await ivy.call("restart", {})) == {"ok": True}
    await ivy.call("run", {"file": "main.py", "code": "print('state' in dir())"})
    await eventually(lambda: finished(doc, 3), timeout=30)
    assert stdout(records(doc)[2]) == "False\n"  # a restart does not
    await doc.close()
    await ivy.close()


async def test_a_kernel_that_dies_between_runs_is_replaced_and_said_so(
    kernel_server: ServerProcess,
) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": ""})
    token = server.token(room, "candidate")
    doc = await YClient(server.ws_url(room, token)).connect()
    cal = await ControlClient(server.url, token).connect()
    later_exit = "import os, threading, time\nthreading.Timer(0.3, os._exit, (1,)).start()"
    await cal.call("run", {"file": "main.py", "code": later_exit})
    await eventually(lambda: finished(doc, 1), timeout=30)
    assert records(doc)[0]["status"] == "ok"
    await asyncio.sleep(1.0)
    await cal.call("run", {"file": "main.py", "code": "print('again')"})
    await eventually(lambda: finished(doc, 2), timeout=30)
    second = records(doc)[1]
    assert stdout(second) == "again\n"
    assert "had died since the last run" in second["note"]
    await doc.close()
    await cal.close()


async def test_runs_waiting_when_the_round_ends_never_run(kernel_server: ServerProcess) -> None:
    server = kernel_server
    room = server.create_room(files={"main.py": ""})
    cal_token = server.token(room, "candidate", "Cal")
    doc = await YClient(server.ws_url(room, cal_token)).connect()
    ivy = await ControlClient(server.url, server.token(room, "interviewer", "Ivy")).connect()
    cal = await ControlClient(server.url, cal_token).connect()
    await ivy.call("round", {"action": "start"})
    slow = "print('working', flush=True)\nimport time\ntime.sleep(2)"
    await cal.call("run", {"file": "main.py", "code": slow})
    await cal.call("run", {"file": "main.py", "code": "print('after the end')"})
    await eventually(lambda: len(records(doc)) == 1 and stdout(records(doc)[0]) == "working\n")
    await ivy.call("round", {"action": "end"})
    await eventually(lambda: finished(doc, 2), timeout=30)
    first, second = records(doc)
    assert first["status"] == "killed"
    assert second["status"] == "killed" and "kernel was closed" in second["note"]
    assert stdout(second) == ""
    refused = await cal.call("run", {"file": "main.py", "code": "print(1)"})
    assert refused["reason"] == "the round has ended: nothing more can be run"
    await doc.close()
    await ivy.close()
    await cal.close()
