"""Wiring of code execution: one ``RoomKernel`` per room, fed by control events.

It decides when a room gets a kernel (its first run) and loses it (round end, idle timeout),
routes ``input()`` requests to the participant who pressed run, and refuses to run anything
when the sandbox is unavailable unless unsandboxed kernels are explicitly allowed.

In cluster mode a room's kernel lives on the node that holds the room's lease: requests made
on any other node are forwarded to it (``route_through``, ``handle_forwarded``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernels.gateway import GatewayLauncher
from kernels.grading import run_hidden_tests
from kernels.pool import KernelLauncher, KernelPool, SandboxConfinement
from kernels.runs import RoomKernel, RunLimits, Runner
from kernels.sandbox import MIB, Sandbox, SandboxError, SandboxLimits
from kernels.specs import KernelSpecs
from rooms.document import files_of
from rooms.errors import BadRequest, Conflict, RoomError
from rooms.outputs import RoomOutputs
from rooms.registry import RoomRegistry
from rooms.types import Participant, RoomInfo, Round, RoundState
from server.cluster import Cluster, OwnerUnreachable, participant_from, participant_json
from server.settings import Settings

log = logging.getLogger("clarityhire.execution")

# emit_to(room_id, participant_id, event, payload): tell one participant's connections.
EmitTo = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _PendingInput:
    participant_id: str
    answer: asyncio.Future[str]


def build_execution(settings: Settings, registry: RoomRegistry) -> Execution:
    """Kernels as the settings say, sandboxed; disabled, with the reason, if that fails."""
    runtime = _runtime_dir(settings)
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o711)  # the kernel uid must pass through to its own folders, and no more
    kernel_env = Path(settings.kernel_env).resolve()
    specs = KernelSpecs(settings.data_path / "kernelspecs", kernel_env, settings.languages)
    limits = RunLimits(settings.run_timeout_seconds, settings.run_output_max_bytes)

    def disabled(reason: str) -> Execution:
        log.error("code execution disabled", extra={"reason": reason})
        return Execution(registry, None, specs, limits, settings.kernel_idle_seconds, reason)

    sizes = {specs.name_for(language): settings.kernel_pool_size for language in specs.enabled}
    if settings.kernel_gateway_url:
        gateway = GatewayLauncher(settings.kernel_gateway_url, runtime, timeout_s=60)
        log.info("kernels run on a gateway", extra={"url": settings.kernel_gateway_url})
        return Execution(
            registry,
            KernelPool(gateway, sizes),
            specs,
            limits,
            settings.kernel_idle_seconds,
            None,
            where="gateway",
        )
    try:
        spec_dir = specs.write()
    except RuntimeError as e:
        return disabled(str(e))
    try:
        sandbox = Sandbox(
            kernel_env=kernel_env,
            kernel_uid=settings.kernel_uid,
            kernel_gid=settings.kernel_gid,
            limits=SandboxLimits(
                memory_bytes=settings.kernel_memory_mb * MIB,
                cpu_seconds=settings.kernel_cpu_seconds,
                max_processes=settings.kernel_max_processes,
                max_file_bytes=settings.kernel_max_file_mb * MIB,
                workspace_bytes=settings.kernel_workspace_mb * MIB,
            ),
            etc_dir=runtime / "etc",
        )
    except ValueError as e:  # a root uid, a forbidden variable: a configuration error
        return disabled(f"sandbox settings: {e}")
    confinement: SandboxConfinement | None = SandboxConfinement(
        sandbox, settings.kernel_uid_base, settings.kernel_slots
    )
    try:
        sandbox.write_etc()
        sandbox.check_available(scratch=runtime)
    except SandboxError as e:
        if not settings.allow_unsandboxed_kernels:
            return disabled(f"no sandbox: {e}")
        log.warning(
            "RUNNING KERNELS WITHOUT A SANDBOX: candidate code has the server's rights",
            extra={"reason": str(e)},
        )
        confinement = None
    launcher = KernelLauncher(spec_dir, runtime, confinement, timeout_s=60)
    return Execution(
        registry,
        KernelPool(launcher, sizes),
        specs,
        limits,
        settings.kernel_idle_seconds,
        None,
        where="sandbox" if confinement is not None else "unsandboxed",
    )


class Execution:
    def __init__(
        self,
        registry: RoomRegistry,
        pool: KernelPool | None,
        specs: KernelSpecs,
        limits: RunLimits,
        idle_s: float,
        disabled_reason: str | None,
        where: str = "",
    ) -> None:
        self.registry = registry
        self.where = where  # "sandbox", "gateway" or "unsandboxed" (loudly, by setting)
        self.pool = pool
        self.specs = specs
        self.limits = limits
        self.idle_s = idle_s
        self.disabled_reason = disabled_reason
        self.emit_to: EmitTo | None = None
        self._kernels: dict[str, RoomKernel] = {}
        self._inputs: dict[str, _PendingInput] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._cluster: Cluster | None = None

    def route_through(self, cluster: Cluster) -> None:
        """Cluster mode: run each room's code on the node that holds its lease."""
        self._cluster = cluster

    def status(self) -> dict[str, Any]:
        """What a room is told about code execution here."""
        return {
            "enabled": self.pool is not None,
            "where": self.where,
            "sandboxed": self.where == "sandbox",
            "reason": self.disabled_reason,
            "languages": list(self.specs.enabled),
        }

    def start(self) -> None:
        if self.pool is not None:
            self.pool.start()
            self._reaper = asyncio.create_task(self._reap_idle())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for kernel in self._kernels.values():
            await kernel.close()
        self._kernels.clear()
        if self.pool is not None:
            await self.pool.close()

    def has_kernel(self, room_id: str) -> bool:
        """Whether a room's kernel runs on this node."""
        return room_id in self._kernels

    async def forget(self, room_id: str) -> None:
        """A deleted room's kernel stops, with whatever it held."""
        kernel = self._kernels.pop(room_id, None)
        if kernel is not None:
            await kernel.close()

    async def run(self, info: RoomInfo, who: Participant, file: str, code: str | None) -> None:
        """Start a run of ``code`` (a selection or cell), or of ``file`` as it is now."""
        owner = await self._owner_elsewhere(info)
        if owner is not None:
            await self.registry.log.flush()  # the owner reads the files from the log
            await self._forward("run", info, who, {"file": file, "code": code})
            return
        kernel = self._kernel_for(info)
        room = await self.registry.open(info.id, fresh=True)
        files = files_of(room.doc)
        self.registry.release(room)
        if code is None:
            code = files.get(file)
            if code is None:
                raise BadRequest(f"no file {file!r} in this room")
        workspace = files if info.language == "python" else None
        self._track(kernel.run(Runner(who.id, who.name), file, code, workspace))

    async def grade(
        self, language: str, submission: dict[str, str], tests: dict[str, str]
    ) -> dict[str, Any]:
        """Run hidden tests against a submission in a fresh kernel (see kernels/grading.py)."""
        if self.disabled_reason is not None or self.pool is None:
            raise Conflict(f"code execution is disabled on this server: {self.disabled_reason}")
        try:
            spec_name = self.specs.name_for(language)
        except KeyError as e:
            raise Conflict(f"no kernel for language {language!r} here") from e
        return await run_hidden_tests(self.pool, spec_name, self.limits, submission, tests)

    async def interrupt(self, info: RoomInfo, who: Participant) -> bool:
        owner = await self._owner_elsewhere(info)
        if owner is not None:
            return bool((await self._forward("interrupt", info, who, {}))["interrupted"])
        kernel = self._kernels.get(info.id)
        return kernel is not None and await kernel.interrupt()

    async def restart(self, info: RoomInfo, who: Participant) -> None:
        owner = await self._owner_elsewhere(info)
        if owner is not None:
            await self._forward("restart", info, who, {})
            return
        kernel = self._kernels.get(info.id)
        if kernel is not None:
            await kernel.restart()

    async def answer(self, info: RoomInfo, who: Participant, value: str) -> None:
        """The value a run's ``input()`` asked its runner for."""
        owner = await self._owner_elsewhere(info)
        if owner is not None:
            await self._forward("input", info, who, {"value": value})
            return
        pending = self._inputs.get(info.id)
        if pending is None or pending.answer.done():
            raise Conflict("no run is waiting for input")
        if pending.participant_id != who.id:
            raise Conflict("the run is waiting for the participant who started it")
        pending.answer.set_result(value)

    async def round_changed(self, room_id: str, round_: Round) -> None:
        """A live round that opens gets its kernel now, so the first run does not wait; a
        round that ends loses its kernel, with whatever it held."""
        if round_.state == RoundState.ENDED:
            await self.forget(room_id)
        elif round_.state == RoundState.OPEN and self.pool is not None:
            self._track(self._prepare(room_id))

    def prepare_soon(self, room_id: str) -> None:
        """Start a room's kernel now (this node just took the room over)."""
        if self.pool is not None:
            self._track(self._prepare(room_id))

    async def handle_forwarded(self, request: dict[str, Any]) -> dict[str, Any]:
        """Cluster mode: a kernel request another node forwarded to this one, the owner."""
        try:
            info = await self.registry.info(request["room"])
            who = participant_from(request["who"])
            args = request["args"]
            op = request["op"]
            if op == "run":
                await self.run(info, who, args["file"], args["code"])
            elif op == "interrupt":
                return {"ok": True, "interrupted": await self.interrupt(info, who)}
            elif op == "restart":
                await self.restart(info, who)
            elif op == "input":
                await self.answer(info, who, args["value"])
            else:
                raise BadRequest(f"unknown forwarded request {op!r}")
        except RoomError as e:
            return {"ok": False, "reason": e.reason}
        return {"ok": True}

    async def _owner_elsewhere(self, info: RoomInfo) -> str | None:
        """The node that owns the room's kernel if it is not this one (cluster mode)."""
        if self._cluster is None:
            return None
        if self.disabled_reason is not None or self.pool is None:
            raise Conflict(f"code execution is disabled on this server: {self.disabled_reason}")
        try:
            owner = await self._cluster.known_owner(info.id)
        except OwnerUnreachable as e:
            raise Conflict(f"cannot reach the cluster: {e}") from e
        return None if owner == self._cluster.node_id else owner

    async def _forward(
        self, op: str, info: RoomInfo, who: Participant, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Have the room's owner node do it (cluster mode)."""
        assert self._cluster is not None
        request = {
            "op": op,
            "room": info.id,
            "who": participant_json(who),
            "args": args,
        }
        try:
            answer = await self._cluster.on_owner(info.id, "kernel", request)
        except OwnerUnreachable as e:
            raise Conflict(f"the node running this room's code is unreachable: {e}") from e
        if not answer.get("ok"):
            raise Conflict(str(answer.get("reason")))
        return answer

    async def _prepare(self, room_id: str) -> None:
        try:
            await self._kernel_for(await self.registry.info(room_id)).prepare()
        except Exception:  # the first run will try again, and say what went wrong
            log.exception("could not ready a kernel", extra={"room": room_id})

    def _track(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internals ---------------------------------------------------------------------------

    def _kernel_for(self, info: RoomInfo) -> RoomKernel:
        if self.disabled_reason is not None or self.pool is None:
            raise Conflict(f"code execution is disabled on this server: {self.disabled_reason}")
        kernel = self._kernels.get(info.id)
        if kernel is None:
            try:
                spec_name = self.specs.name_for(info.language)
            except KeyError as e:
                raise Conflict(f"no kernel for language {info.language!r} here") from e

            async def ask(runner: Runner, prompt: str, password: bool) -> str:
                return await self._ask(info.id, runner, prompt, password)

            kernel = RoomKernel(
                self.pool, spec_name, self.limits, RoomOutputs(self.registry, info.id), ask
            )
            self._kernels[info.id] = kernel
        return kernel

    async def _ask(self, room_id: str, runner: Runner, prompt: str, password: bool) -> str:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inputs[room_id] = _PendingInput(runner.id, answer)
        try:
            if self.emit_to is not None:
                payload = {"prompt": prompt, "password": password}
                await self.emit_to(room_id, runner.id, "input_request", payload)
            return await answer
        finally:
            self._inputs.pop(room_id, None)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.idle_s / 2))
            cutoff = time.monotonic() - self.idle_s
            for room_id, kernel in list(self._kernels.items()):
                if kernel.busy or kernel.last_used >= cutoff:
                    continue
                if self._kernels.get(room_id) is kernel:  # still this room's, after awaits
                    del self._kernels[room_id]
                try:
                    await kernel.close()
                    log.info("idle kernel shut down", extra={"room": room_id})
                except Exception:
                    log.exception("idle kernel shutdown failed", extra={"room": room_id})


def _runtime_dir(settings: Settings) -> Path:
    """Where kernels' folders go: the setting, else ``<data_dir>/kernels`` if the kernels' uids
    can pass through every folder above it, else a folder of the system's temporary one."""
    if settings.kernel_runtime_dir:
        return Path(settings.kernel_runtime_dir).resolve()
    preferred = settings.data_path / "kernels"
    data = settings.data_path.resolve()
    if all(folder.stat().st_mode & stat.S_IXOTH for folder in (data, *data.parents)):
        return preferred
    digest = hashlib.sha256(str(settings.data_path).encode()).hexdigest()[:12]
    fallback = Path(tempfile.gettempdir()) / f"clarityhire-kernels-{digest}"
    log.info("kernel folders outside data_dir", extra={"path": str(fallback)})
    return fallback
