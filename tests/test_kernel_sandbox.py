"""Hostile code in a room's kernel, through the real server: contained, and the rest lives on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ADMIN_KEY, ServerProcess, eventually
from control import ControlClient
from test_kernels import finished, records, stdout
from yclient import YClient

HOSTILE: dict[str, tuple[str, str]] = {
    # name: (code, what the run must print)
    "server database": (
        "import os\n"
        "tops = ('/tmp', '/workspace', '/work', '/var', '/root', '/home', '/etc')\n"
        "hits = [r for t in tops for r, _, fs in os.walk(t) if 'clarityhire.db' in fs]\n"
        "print('db', hits, os.path.exists(DATA))",
        "db [] False",
    ),
    "server settings and secrets": (
        "import os\n"
        "seen = [k for k in os.environ if 'CLARITYHIRE' in k]\n"
        "env = open('/proc/1/environ', 'rb').read()\n"
        "print('secrets', seen, KEY.encode() in env, os.path.exists(DATA + '/admin_key'))",
        "secrets [] False False",
    ),
    "server port": (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', PORT), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)",
        "refused ConnectionRefusedError",
    ),
    "network interfaces": (
        "import socket\nprint('ifaces', [n for _, n in socket.if_nameindex()])",
        "ifaces ['lo']",
    ),
    "write outside": (
        "import os\n"
        "written = []\n"
        "for path in ('/etc/x', '/usr/x', '/x', os.path.dirname(DATA) + '/x'):\n"
        "    try:\n"
        "        open(path, 'w').write('pwned')\n"
        "        written.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "open('mine.txt', 'w').write('ok'); print('written outside', written)",
        "written outside []",
    ),
    "fork bomb": (
        "import os, time\n"
        "pids = []\n"
        "try:\n"
        "    for _ in range(500):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(3); os._exit(0)\n"
        "        pids.append(pid)\n"
        "except OSError as e:\n"
        "    print('capped at', len(pids) < 500, type(e).__name__)\n"
        "for pid in pids:\n"
        "    os.kill(pid, 9); os.waitpid(pid, 0)",
        "capped at True BlockingIOError",
    ),
    "memory grab": (
        "chunks = []\n"
        "try:\n"
        "    for _ in range(40):\n"
        "        chunks.append(bytearray(100 * 1024 * 1024))\n"
        "    print('grabbed 4 GB')\n"
        "except MemoryError:\n"
        "    print('capped at', len(chunks) * 100, 'MB')\n"
        "del chunks",
        "capped at",
    ),
}


@pytest.fixture
def hostile_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(kernel_memory_mb="768", run_timeout_seconds="20")


async def test_hostile_code_is_contained(hostile_server: ServerProcess) -> None:
    server = hostile_server
    room = server.create_room(files={"main.py": ""})
    bystander = server.create_room(files={"main.py": ""})
    token = server.token(room, "candidate", "Mallory")
    doc = await YClient(server.ws_url(room, token)).connect()
    mallory = await ControlClient(server.url, token).connect()
    assert mallory.welcome["execution"]["sandboxed"] is True
    prelude = f"DATA = {str(server.data_dir)!r}\nKEY = {ADMIN_KEY!r}\nPORT = {server.port}\n"
    await mallory.call("run", {"file": "main.py", "code": prelude})
    await eventually(lambda: finished(doc, 1), timeout=60)

    for index, (name, (code, expected)) in enumerate(HOSTILE.items(), start=1):
        answer = await mallory.call("run", {"file": "main.py", "code": code})
        assert answer == {"ok": True}, name
        await eventually(lambda i=index: finished(doc, i + 1), timeout=60)
        result = records(doc)[index]
        assert expected in stdout(result), (name, result)
        # The server and the other rooms are unaffected throughout.
        assert server.api("GET", "/healthz", key=None).status_code == 200
        assert server.api("GET", f"/api/rooms/{bystander}").status_code == 200
    assert not (server.data_dir / "x").exists()

    # Another room's kernel works, and the hostile room's kernel still does too.
    other = await YClient(server.ws_url(bystander, server.token(bystander, "candidate"))).connect()
    ivy = await ControlClient(server.url, server.token(bystander, "interviewer")).connect()
    await ivy.call("run", {"file": "main.py", "code": "import os; print(os.getuid(), os.getcwd())"})
    await eventually(lambda: finished(other, 1), timeout=60)
    assert stdout(records(other)[0]) == "65534 /workspace\n"
    await mallory.call("run", {"file": "main.py", "code": "print(open('mine.txt').read())"})
    await eventually(lambda: finished(doc, len(HOSTILE) + 2), timeout=60)
    assert stdout(records(doc)[-1]) == "ok\n"
    for client in (doc, other):
        await client.close()
    await mallory.close()
    await ivy.close()


async def test_kernels_are_refused_without_a_sandbox(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(kernel_env="/nonexistent-kernel-env")
    room = server.create_room()
    cal = await ControlClient(server.url, server.token(room, "candidate")).connect()
    status: dict[str, Any] = cal.welcome["execution"]
    assert status["enabled"] is False and "kernel environment missing" in status["reason"]
    refused = await cal.call("run", {"file": "main.py"})
    assert refused["reason"].startswith("code execution is disabled on this server")
    await cal.close()
    await asyncio.sleep(0)


async def test_filling_the_workspace_stops_at_its_quota(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    room = server.create_room(files={"main.py": ""})
    token = server.token(room, "candidate")
    doc = await YClient(server.ws_url(room, token)).connect()
    cal = await ControlClient(server.url, token).connect()
    code = (
        "import os\n"
        "n = 0\n"
        "try:\n"
        "    while n < 400:\n"  # bounded: at most 400 x 16 MB, far over the 128 MB quota
        "        with open(f'fill{n}', 'wb') as f:\n"
        "            f.write(b'x' * 16 * 1024 * 1024)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('stopped', n < 400, e.errno)\n"
        "for name in os.listdir('.'):\n"
        "    os.remove(name)\n"
        "open('after', 'w').write('ok'); print(open('after').read())"
    )
    await cal.call("run", {"file": "main.py", "code": code})
    await eventually(lambda: finished(doc, 1), timeout=60)
    assert stdout(records(doc)[0]) == "stopped True 28\nok\n"  # 28: ENOSPC
    await doc.close()
    await cal.close()
