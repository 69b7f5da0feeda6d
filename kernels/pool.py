"""Starting kernels, and a pool of started ones so a room's first run does not wait for a boot.

Each kernel gets its own folder with a working directory (the candidate's files live there)
and a connection directory (its ipc sockets). The process is launched by jupyter_client's
kernel manager; a ``Confinement`` wraps the command so that it runs sandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from kernels.sandbox import Sandbox, SandboxError

log = logging.getLogger("clarityhire.kernels")


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one confined kernel process."""

    argv: list[str]
    env: dict[str, str]
    preexec_fn: Callable[[], None] | None


class Confinement(Protocol):
    """Turns a kernel command into a sandboxed one (see ``kernels.sandbox``)."""

    def prepare_dirs(self, work_dir: Path, connection_dir: Path) -> None: ...

    def launch(self, argv: list[str], work_dir: Path, connection_dir: Path) -> Launch: ...

    def release(self, work_dir: Path) -> None: ...


class SandboxConfinement:
    """``Confinement`` by a ``kernels.sandbox.Sandbox``, one host uid per kernel.

    The process cap (RLIMIT_NPROC) counts every process and thread of a uid machine-wide, and
    an idle ipykernel in its sandbox already has about 14: with one uid for all kernels, a
    few kernels would exhaust it and one fork bomb would starve every room. So each kernel
    gets its own slot ``uid_base + n``; inside, every kernel still sees ``sandbox.kernel_uid``.
    """

    def __init__(self, sandbox: Sandbox, uid_base: int, slots: int) -> None:
        self.sandbox = sandbox
        self.uid_base = uid_base
        self._free = list(range(slots))
        self._taken: dict[Path, tuple[int, Sandbox]] = {}

    def prepare_dirs(self, work_dir: Path, connection_dir: Path) -> None:
        if not self._free:
            raise SandboxError("every kernel slot is in use: no more kernels on this server")
        slot = self._free.pop(0)
        uid = self.uid_base + slot
        own = replace(
            self.sandbox,
            kernel_uid=uid,
            kernel_gid=uid,
            sandbox_uid=self.sandbox.kernel_uid,
            sandbox_gid=self.sandbox.kernel_gid,
        )
        self._taken[work_dir] = (slot, own)
        own.prepare_dirs(work_dir, connection_dir)

    def launch(self, argv: list[str], work_dir: Path, connection_dir: Path) -> Launch:
        own = self._taken[work_dir][1]
        # jupyter_client has just written the connection file, readable by us alone.
        own.hand_over(connection_dir / "kernel.json")
        command = own.command(argv, work_dir, connection_dir)
        return Launch(list(command.argv), command.env, command.preexec_fn)

    def release(self, work_dir: Path) -> None:
        taken = self._taken.pop(work_dir, None)
        if taken is not None:
            self._free.append(taken[0])


class ConfinedKernelManager(AsyncKernelManager):
    """A kernel manager whose process starts through a ``Confinement``."""

    confinement: Confinement | None = None
    work_dir: Path = Path()
    connection_dir: Path = Path()

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self.confinement is not None:
            launch = self.confinement.launch(kernel_cmd, self.work_dir, self.connection_dir)
            kernel_cmd = launch.argv
            kw["env"] = launch.env
            kw["preexec_fn"] = launch.preexec_fn
            kw["cwd"] = str(self.work_dir)
        kw["stdout"] = subprocess.DEVNULL  # ipykernel's banner; nothing anyone reads
        await super()._async_launch_kernel(kernel_cmd, **kw)


@dataclass(slots=True)
class KernelHandle:
    """One running kernel and a client connected to it."""

    spec_name: str
    manager: AsyncKernelManager  # a local, confined one, or a gateway's
    client: AsyncKernelClient
    folder: Path
    confinement: Confinement | None

    @property
    def work_dir(self) -> Path:
        return self.folder / "work"

    async def is_alive(self) -> bool:
        return bool(await self.manager.is_alive())

    async def shutdown(self) -> None:
        self.client.stop_channels()
        try:
            with contextlib.suppress(Exception):
                await self.manager.shutdown_kernel(now=True)
        finally:
            await asyncio.to_thread(shutil.rmtree, self.folder, ignore_errors=True)
            if self.confinement is not None:
                self.confinement.release(self.work_dir)


class KernelLauncher:
    def __init__(
        self, spec_dir: Path, runtime_dir: Path, confinement: Confinement | None, timeout_s: float
    ) -> None:
        self.specs = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
        self.runtime_dir = runtime_dir
        self.confinement = confinement
        self.timeout_s = timeout_s

    async def start(self, spec_name: str) -> KernelHandle:
        folder = self.runtime_dir / secrets.token_hex(8)
        work_dir, connection_dir = folder / "work", folder / "conn"
        for path in (work_dir, connection_dir):
            path.mkdir(parents=True, mode=0o700)
        folder.chmod(0o711)
        if self.confinement is not None:
            try:
                self.confinement.prepare_dirs(work_dir, connection_dir)
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                self.confinement.release(work_dir)
                raise
        manager = ConfinedKernelManager(
            kernel_name=spec_name,
            kernel_spec_manager=self.specs,
            transport="ipc",
            ip=str(connection_dir / "ipc"),
            connection_file=str(connection_dir / "kernel.json"),
        )
        manager.confinement = self.confinement
        manager.work_dir = work_dir
        manager.connection_dir = connection_dir
        try:
            await manager.start_kernel(cwd=str(work_dir), env={"PATH": "/usr/bin:/bin"})
            client = manager.client()
            client.start_channels()
            await client.wait_for_ready(timeout=self.timeout_s)
        except BaseException:  # cancelled too: the process, folder and uid slot must not leak
            with contextlib.suppress(Exception):
                await asyncio.shield(manager.shutdown_kernel(now=True))
            shutil.rmtree(folder, ignore_errors=True)
            if self.confinement is not None:
                self.confinement.release(work_dir)
            raise
        return KernelHandle(spec_name, manager, client, folder, self.confinement)


class Launcher(Protocol):
    """Starts one kernel: ``KernelLauncher`` here, ``GatewayLauncher`` on a gateway."""

    async def start(self, spec_name: str) -> KernelHandle: ...


class KernelPool:
    """Keeps ``size`` started kernels ready per kernelspec and refills in the background."""

    def __init__(self, launcher: Launcher, sizes: dict[str, int]) -> None:
        self.launcher = launcher
        self.sizes = sizes
        self._ready: dict[str, deque[KernelHandle]] = {name: deque() for name in sizes}
        self._refills: set[asyncio.Task[None]] = set()
        self._filling: set[str] = set()  # one filler per kernelspec, or they overfill
        self._closed = False

    def start(self) -> None:
        for name in self.sizes:
            self._refill(name)

    async def take(self, spec_name: str) -> KernelHandle:
        """A ready kernel if there is one, else one started now (a cold start)."""
        ready = self._ready.setdefault(spec_name, deque())
        handle = None
        while ready and handle is None:
            candidate = ready.popleft()
            if await candidate.is_alive():
                handle = candidate
            else:
                await candidate.shutdown()
        self._refill(spec_name)
        if handle is None:
            handle = await self.launcher.start(spec_name)
        return handle

    async def close(self) -> None:
        self._closed = True
        for task in self._refills:
            task.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)
        for ready in self._ready.values():
            while ready:
                await ready.popleft().shutdown()

    def _refill(self, spec_name: str) -> None:
        if self._closed or spec_name in self._filling:
            return
        self._filling.add(spec_name)
        task = asyncio.create_task(self._fill(spec_name))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _fill(self, spec_name: str) -> None:
        ready = self._ready.setdefault(spec_name, deque())
        try:
            while len(ready) < self.sizes.get(spec_name, 0) and not self._closed:
                try:
                    ready.append(await self.launcher.start(spec_name))
                except Exception:
                    log.exception("kernel start failed", extra={"kernel": spec_name})
                    await asyncio.sleep(2)
        finally:
            self._filling.discard(spec_name)
