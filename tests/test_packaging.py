"""A wheel of the project installs and serves without the source tree."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import httpx
from conftest import ADMIN_KEY, ROOT, free_port
from yclient import YClient


async def test_wheel_serves_from_an_empty_folder(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
    )
    wheel = next((tmp_path / "dist").glob("clarityhire-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    site = next(env_dir.glob("lib/python*/site-packages"))
    # Dependencies come from the test environment (no registry needed); the project itself
    # only from the wheel: a path line does not activate the editable install's .pth.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    python = env_dir / "bin" / "python"
    origin = subprocess.run(
        [python, "-c", "import server, rooms; print(server.__file__); print(rooms.__file__)"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in origin, origin

    port = free_port()
    proc = subprocess.Popen(
        [python, "-m", "server.cli", "serve", "--port", str(port), "--data-dir", "data"],
        cwd=workdir,
        env={"CLARITYHIRE_ADMIN_KEY": ADMIN_KEY, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        auth = {"authorization": f"Bearer {ADMIN_KEY}"}
        room = httpx.post(base + "/api/rooms", json={"kind": "live"}, headers=auth).json()["id"]
        token = httpx.post(
            f"{base}/api/rooms/{room}/tokens", json={"role": "candidate"}, headers=auth
        ).json()["token"]
        client = await YClient(f"ws://127.0.0.1:{port}/rooms/{room}/doc?token={token}").connect()
        await client.type("works")
        await client.close()
        assert (workdir / "data" / "clarityhire.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
