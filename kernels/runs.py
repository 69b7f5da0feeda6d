"""A room's kernel: runs code, streams outputs, enforces the limits of a run.

The kernel is taken from the pool on the room's first run and never returned: after the room
is done with it (round end, idle timeout) it is shut down. One run at a time per room; runs
started meanwhile wait their turn. Outputs go to an ``OutputSink`` (the room document's
``outputs``), batched so that a chatty program does not turn into one update per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import queue
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kernels.pool import KernelHandle, KernelPool

log = logging.getLogger("clarityhire.kernels")

FLUSH_EVERY_S = 0.05
MIME_KEPT = ("text/plain", "text/html", "image/png")


@dataclass(frozen=True, slots=True)
class RunLimits:
    timeout_s: float
    output_max_bytes: int
    interrupt_grace_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Runner:
    """Who pressed run."""

    id: str
    name: str


class OutputSink(Protocol):
    """Where execution records go; every method is one change of the room document."""

    async def begin(self, record: dict[str, Any]) -> None: ...
    async def add(self, run_id: str, items: list[dict[str, Any]]) -> None: ...
    async def finish(self, run_id: str, fields: dict[str, Any]) -> None: ...


# ask(runner, prompt, password) -> the text the runner typed
AskInput = Callable[[Runner, str, bool], Awaitable[str]]


def workspace_code(files: dict[str, str]) -> str:
    """Python that writes ``files`` into the kernel's folder and forgets modules imported from
    there, so the next import sees the files as they are now. It leaves no names behind."""
    return (
        "def _clarityhire_workspace(files):\n"
        "    import importlib, json, pathlib, sys\n"
        "    here = pathlib.Path.cwd().resolve()\n"
        "    for name, text in json.loads(files).items():\n"
        "        path = pathlib.Path(name)\n"
        "        path.parent.mkdir(parents=True, exist_ok=True)\n"
        "        path.write_text(text)\n"
        "    for module in [m for m, v in list(sys.modules.items())\n"
        "                   if str(getattr(v, '__file__', None) or '').startswith(str(here))]:\n"
        "        del sys.modules[module]\n"
        "    importlib.invalidate_caches()\n"
        f"_clarityhire_workspace({json.dumps(json.dumps(files))})\n"
        "del _clarityhire_workspace\n"
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RoomKernel:
    def __init__(
        self,
        pool: KernelPool,
        spec_name: str,
        limits: RunLimits,
        sink: OutputSink,
        ask_input: AskInput,
    ) -> None:
        self.pool = pool
        self.spec_name = spec_name
        self.limits = limits
        self.sink = sink
        self.ask_input = ask_input
        self._handle: KernelHandle | None = None
        self._run_lock = asyncio.Lock()
        self._running: str | None = None
        self._interrupted = False
        self._closed = False
        self.last_used = time.monotonic()

    @property
    def running(self) -> str | None:
        return self._running

    @property
    def busy(self) -> bool:
        """A run in progress or waiting for its turn (or a kernel being taken)."""
        return self._run_lock.locked()

    async def run(
        self, runner: Runner, file: str, code: str, workspace: dict[str, str] | None = None
    ) -> str:
        """Run ``code`` and record it; returns the run's status. ``workspace`` (a Python
        kernel's) is written to the kernel's folder first, so that code can import the room's
        other files as they are now."""
        async with self._run_lock:
            run_id = secrets.token_hex(6)
            self._running = run_id
            self._interrupted = False
            try:
                if self._closed:  # the round ended while this run waited for its turn
                    await self.sink.begin(self._record(run_id, runner, file, code))
                    return await self._end(run_id, "killed", "the room's kernel was closed")
                return await self._run(run_id, runner, file, code, workspace)
            except asyncio.CancelledError:  # the server is stopping: say so, then stop
                await asyncio.shield(self._end(run_id, "killed", "the server stopped"))
                raise
            except Exception as e:  # no kernel could be had, the document refused a write...
                log.exception("run failed", extra={"run": run_id})
                return await self._end(run_id, "killed", f"run failed: {e}")
            finally:
                self._running = None
                self.last_used = time.monotonic()

    async def prepare(self) -> None:
        """Take the kernel now rather than at the first run."""
        async with self._run_lock:
            if not self._closed:
                await self._kernel()  # whether it replaced a dead one is moot here

    async def interrupt(self) -> bool:
        if self._running is None:
            return False
        self._interrupted = True
        if self._handle is not None:  # else the run stops as soon as its kernel is there
            await self._handle.manager.interrupt_kernel()
        return True

    async def restart(self) -> None:
        """A fresh kernel: all state is lost (a running run ends as ``killed``)."""
        old, self._handle = self._handle, None
        if old is not None:
            await old.shutdown()

    async def close(self) -> None:
        """For good: runs still waiting end as ``killed`` instead of starting a kernel."""
        self._closed = True
        await self.restart()

    # -- internals ---------------------------------------------------------------------------

    async def _kernel(self) -> tuple[KernelHandle, bool]:
        """The room's kernel, and whether it had to replace one that died since last used."""
        died = self._handle is not None and not await self._handle.is_alive()
        if died and self._handle is not None:
            await self._handle.shutdown()
            self._handle = None
        if self._handle is None:
            self._handle = await self.pool.take(self.spec_name)
        return self._handle, died

    @staticmethod
    def _record(run_id: str, runner: Runner, file: str, code: str) -> dict[str, Any]:
        return {
            "id": run_id,
            "author": runner.id,
            "author_name": runner.name,
            "file": file,
            "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
            "started_at": now_ms(),
            "ended_at": None,
            "status": "running",
            "note": "",
        }

    async def _end(self, run_id: str, status: str, note: str) -> str:
        """Close a record that could not run to its end (best effort: the sink may be what
        failed)."""
        fields = {"status": status, "ended_at": now_ms(), "note": note}
        with contextlib.suppress(Exception):
            await self.sink.finish(run_id, fields)
        return status

    async def _run(
        self, run_id: str, runner: Runner, file: str, code: str, workspace: dict[str, str] | None
    ) -> str:
        await self.sink.begin(self._record(run_id, runner, file, code))
        handle, replaced = await self._kernel()
        if self._interrupted:
            fields = {"status": "interrupted", "ended_at": now_ms(), "note": "interrupted"}
            await self.sink.finish(run_id, fields)
            return "interrupted"
        outputs = _OutputBuffer(self.limits.output_max_bytes)
        if workspace:
            # Queued before the run on the same channel, silent: the kernel runs it first.
            handle.client.execute(workspace_code(workspace), silent=True, store_history=False)
        msg_id = handle.client.execute(code, allow_stdin=True, store_history=True)
        stdin_task = asyncio.create_task(self._serve_stdin(handle, msg_id, runner))
        try:
            status, note = await self._collect(handle, msg_id, run_id, outputs)
        finally:
            stdin_task.cancel()
            await asyncio.gather(stdin_task, return_exceptions=True)
        if outputs.pending:
            await self.sink.add(run_id, outputs.take())
        if replaced:
            lost = "the kernel had died since the last run: this run started in a fresh one"
            note = f"{lost}; {note}" if note else lost
        await self.sink.finish(run_id, {"status": status, "ended_at": now_ms(), "note": note})
        return status

    async def _collect(
        self, handle: KernelHandle, msg_id: str, run_id: str, outputs: _OutputBuffer
    ) -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout_s
        # The first output goes out at once: it is what people wait for.
        last_flush = -FLUSH_EVERY_S
        failed = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return await self._stop_overrun(handle, msg_id)
            # While outputs wait, wake up in time to write them even if nothing else comes.
            wait = min(FLUSH_EVERY_S if outputs.pending else 0.25, remaining)
            try:
                msg = await handle.client.get_iopub_msg(timeout=wait)
            except queue.Empty:
                if outputs.pending:
                    await self.sink.add(run_id, outputs.take())
                    last_flush = loop.time()
                elif not await handle.is_alive():
                    return await self._died(handle)
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                break
            if kind == "error":
                failed = True
            outputs.add(kind, content)
            if outputs.pending and loop.time() - last_flush >= FLUSH_EVERY_S:
                await self.sink.add(run_id, outputs.take())
                last_flush = loop.time()
        if self._interrupted:
            return "interrupted", "interrupted by a participant"
        status = "error" if failed else "ok"
        return status, outputs.truncation_note if outputs.truncated else ""

    async def _stop_overrun(self, handle: KernelHandle, msg_id: str) -> tuple[str, str]:
        """Interrupt; if the kernel does not come back in time, replace it."""
        limit = f"stopped after the {self.limits.timeout_s:g} s time limit"
        await handle.manager.interrupt_kernel()
        if await self._wait_idle(handle, msg_id, self.limits.interrupt_grace_s):
            return "timeout", limit
        await self.restart()
        return "timeout", f"{limit}; the kernel did not respond and was restarted"

    async def _wait_idle(self, handle: KernelHandle, msg_id: str, within_s: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + within_s
        while loop.time() < end:
            try:
                msg = await handle.client.get_iopub_msg(timeout=max(0.01, end - loop.time()))
            except queue.Empty:
                return False
            if (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
            ):
                return True
        return False

    async def _died(self, handle: KernelHandle) -> tuple[str, str]:
        process = getattr(handle.manager.provisioner, "process", None)
        code = process.poll() if process is not None else None
        await self.restart()
        reason = f"exit code {code}" if code is not None else "it stopped answering"
        if code is not None and code < 0:
            reason = f"killed by signal {-code}"
        note = f"the kernel died ({reason}); the next run starts in a fresh kernel"
        return "killed", note

    async def _serve_stdin(self, handle: KernelHandle, msg_id: str, runner: Runner) -> None:
        while True:
            try:
                msg = await handle.client.get_stdin_msg(timeout=0.25)
            except queue.Empty:
                continue
            if msg["msg_type"] != "input_request":
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            try:
                answer = await self.ask_input(
                    runner, str(content.get("prompt", "")), bool(content.get("password"))
                )
            except Exception:  # nobody to ask: an empty line beats waiting for the time limit
                log.exception("input request failed")
                answer = ""
            handle.client.input(answer)


class _OutputBuffer:
    """Outputs waiting to be written, merged and capped at ``max_bytes`` per run."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.truncated = False
        self.pending: list[dict[str, Any]] = []

    @property
    def truncation_note(self) -> str:
        return f"output truncated at {self.max_bytes} bytes"

    def take(self) -> list[dict[str, Any]]:
        items, self.pending = self.pending, []
        return items

    def add(self, kind: str, content: dict[str, Any]) -> None:
        item = _output_item(kind, content)
        if item is None or self.truncated:
            return
        size = _size(item)
        if self.used + size > self.max_bytes:
            self.truncated = True
            room = self.max_bytes - self.used
            if item["type"] == "stream" and room > 0:
                self._append({**item, "text": item["text"][:room]})
            marker = f"\n[{self.truncation_note}]\n"
            self._append({"type": "stream", "name": "stderr", "text": marker})
            return
        self.used += size
        self._append(item)

    def _append(self, item: dict[str, Any]) -> None:
        last = self.pending[-1] if self.pending else None
        if (
            last is not None
            and item["type"] == "stream"
            and last["type"] == "stream"
            and last["name"] == item["name"]
        ):
            last["text"] += item["text"]
        else:
            self.pending.append(item)


def _output_item(kind: str, content: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "stream":
        return {"type": "stream", "name": content.get("name", "stdout"), "text": content["text"]}
    if kind in ("display_data", "execute_result"):
        data = {k: v for k, v in content.get("data", {}).items() if k in MIME_KEPT}
        return {"type": kind, "data": data} if data else None
    if kind == "error":
        return {
            "type": "error",
            "ename": content.get("ename", ""),
            "evalue": content.get("evalue", ""),
            "traceback": content.get("traceback", []),
        }
    return None


def _size(item: dict[str, Any]) -> int:
    if item["type"] == "stream":
        return len(item["text"].encode())
    if item["type"] == "error":
        return sum(len(line) for line in item["traceback"]) + len(item["evalue"])
    return sum(len(str(v)) for v in item["data"].values())
