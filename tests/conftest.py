"""Real servers for the tests: a uvicorn subprocess on a free port, SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rooms.store import SqlStore, sqlite_url
from rooms.types import LogEntry, TimelineEvent

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "test-admin-key"
PG_URL = os.environ.get("CLARITYHIRE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def kernel_runtime_dir() -> str:
    folder = tempfile.mkdtemp(prefix="clarityhire-test-kernels-")
    os.chmod(folder, 0o711)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``clarityhire serve`` in a subprocess; survives kill/start on the same port and data."""

    def __init__(
        self,
        data_dir: Path,
        backend: str,
        env: dict[str, str] | None = None,
        schema: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.backend = backend
        self.port = free_port()
        self.schema = schema or f"t_{secrets.token_hex(6)}"
        self.env = {
            **os.environ,
            "CLARITYHIRE_ADMIN_KEY": ADMIN_KEY,
            "CLARITYHIRE_LOG_LEVEL": "warning",
            # Kernels start on demand unless a test asks for a pool; their folders must lie
            # where the sandbox's uid can reach them (pytest's own tmp folders are 0700).
            "CLARITYHIRE_KERNEL_POOL_SIZE": "0",
            "CLARITYHIRE_KERNEL_ENV": str(ROOT / ".kernel-env"),
            "CLARITYHIRE_KERNEL_RUNTIME_DIR": kernel_runtime_dir(),
            **(env or {}),
        }
        if backend == "postgres":
            self.env["CLARITYHIRE_DATABASE_URL"] = PG_URL
            self.env["CLARITYHIRE_DATABASE_SCHEMA"] = self.schema
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room_id: str, token: str | None) -> str:
        query = f"?token={token}" if token is not None else ""
        return f"ws://127.0.0.1:{self.port}/rooms/{room_id}/doc{query}"

    def notes_url(self, room_id: str, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/rooms/{room_id}/notes?token={token}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final flush."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- API helpers ---------------------------------------------------------------------------

    def api(
        self, method: str, path: str, json: Any = None, key: str | None = ADMIN_KEY
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.url + path, json=json, headers=headers, timeout=10)

    def create_room(self, **body: Any) -> str:
        response = self.api("POST", "/api/rooms", {"kind": "live", "language": "python", **body})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def token(
        self, room_id: str, role: str = "candidate", name: str = "Ada", ttl: int = 3600
    ) -> str:
        response = self.api(
            "POST", f"/api/rooms/{room_id}/tokens", {"role": role, "name": name, "ttl_seconds": ttl}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def participant(
        self, room_id: str, role: str = "candidate", name: str = "Ada"
    ) -> tuple[str, str]:
        """(token, participant id)."""
        response = self.api("POST", f"/api/rooms/{room_id}/tokens", {"role": role, "name": name})
        assert response.status_code == 201, response.text
        body = response.json()
        return body["token"], body["participant_id"]

    # -- direct reads of the durable store -----------------------------------------------------

    def store(self) -> SqlStore:
        if self.backend == "postgres":
            return SqlStore(PG_URL, self.schema)
        return SqlStore(sqlite_url(self.data_dir / "clarityhire.db"))

    async def history(self, room_id: str) -> list[LogEntry]:
        store = self.store()
        await store.start()
        try:
            return await store.history(room_id)
        finally:
            await store.close()

    async def events(self, room_id: str, types: tuple[str, ...] = ()) -> list[TimelineEvent]:
        store = self.store()
        await store.start()
        try:
            return await store.events(room_id, types, 100_000)
        finally:
            await store.close()

    async def drop_schema(self) -> None:
        if self.backend != "postgres":
            return
        import asyncpg

        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


BACKENDS = ["sqlite", "postgres"]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory: ``make_server(backend="sqlite", **env)`` starts a server; all stop at the end."""
    servers: list[ServerProcess] = []

    def make(backend: str = "sqlite", **env: str) -> ServerProcess:
        data = tmp_path / f"server{len(servers)}"
        data.mkdir()
        server = ServerProcess(
            data, backend, {"CLARITYHIRE_" + k.upper(): v for k, v in env.items()}
        )
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        await server.drop_schema()


@pytest.fixture
async def server(make_server: Any) -> ServerProcess:
    return make_server()  # type: ignore[no-any-return]


@pytest.fixture(params=BACKENDS)
async def any_server(request: pytest.FixtureRequest, make_server: Any) -> ServerProcess:
    return make_server(request.param)  # type: ignore[no-any-return]


async def eventually_equal(read: Any, expected: Any, timeout: float = 10.0) -> None:
    """Wait until the awaited ``read()`` equals ``expected`` (a list: has that many items)."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await read()
        got = len(value) if isinstance(value, list) and isinstance(expected, int) else value
        if got == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{value!r} is not {expected!r}")


async def eventually(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Wait until ``predicate()`` is true (converging replicas take a few milliseconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
