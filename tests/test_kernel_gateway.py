"""Rooms run their code on a real Jupyter Kernel Gateway when settings point at one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess, eventually, free_port
from control import ControlClient
from test_kernels import finished, records, stdout
from yclient import YClient


@pytest.fixture
def kernel_gateway(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "kernelgateway",
         "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
         "--KernelGatewayApp.port_retries=0", "--JupyterWebsocketPersonality.list_kernels=True"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/kernelspecs", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    gateway.terminate()
    gateway.wait(15)


async def test_runs_go_to_the_gateway(
    make_server: Callable[..., ServerProcess], kernel_gateway: str
) -> None:
    server = make_server(kernel_gateway_url=kernel_gateway)
    room = server.create_room(files={"main.py": "import os\nprint('from', os.getpid())\n"})
    token = server.token(room, "candidate")
    doc = await YClient(server.ws_url(room, token)).connect()
    cal = await ControlClient(server.url, token).connect()
    assert cal.welcome["execution"]["where"] == "gateway"
    await cal.call("run", {"file": "main.py"})
    await eventually(lambda: finished(doc, 1), timeout=60)
    run = records(doc)[0]
    assert run["status"] == "ok" and stdout(run).startswith("from ")
    kernels = httpx.get(kernel_gateway + "/api/kernels").json()
    assert len(kernels) == 1  # the room's kernel lives on the gateway
    await doc.close()
    await cal.close()
