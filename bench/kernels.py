#!/usr/bin/env python3
"""Code-execution latency: from pressing run to the first output seen through document sync.

Every scenario runs against the real server, started as a subprocess on a free 127.0.0.1 port
the way the tests do (``tests/conftest.py``'s ``ServerProcess``), with its default sandbox
(bubblewrap, one host uid per kernel) and kernels for Python only. A client is a pycrdt
y-websocket document (``tests/yclient.py``) plus python-socketio control connections
(``tests/control.py``). A run is the ``run`` event ``{"file": "main.py", "code": "print(1)"}``;
its latency is measured with ``time.perf_counter`` from just before the event is emitted to
the moment the document update that gives the run's execution record (in the synced
``outputs`` array) its first stream output has been applied on the client. Scenarios:

* ``floor``: a plain local ipykernel from ``.kernel-env`` (no sandbox, no server, the same ipc
  transport and ``execute`` arguments as the server), ``print(1)`` to its first ``stream``
  message on iopub (and to ``idle``, after which the server flushes a short run's outputs);
* ``warm``: one room whose kernel is up, ``--runs`` runs one after another;
* ``concurrent10``: 10 rooms with their own clients send ``run`` at once, a few rounds, on a
  server whose pool holds 10 ready kernels (the first round takes them from the pool and is
  reported apart);
* ``cold``: the first run in a room on a server with ``kernel_pool_size=0``, so the kernel
  boots on demand.

Before each measured phase the script waits until the server's process tree is idle (the pool
refills in the background, and a booting kernel would take a core from the measurement).
It prints a table and writes ``bench/results/kernels.json``. Run it with the project's venv:
``.venv/bin/python bench/kernels.py`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
# Ahead of bench/ (sys.path[0]), where this file would shadow the ``kernels`` package.
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import ServerProcess  # noqa: E402
from control import ControlClient  # noqa: E402
from jupyter_client.asynchronous.client import AsyncKernelClient  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from pycrdt import Array, Map  # noqa: E402
from yclient import YClient  # noqa: E402

from kernels.specs import KernelSpecs  # noqa: E402

T = TypeVar("T")
RESULTS = REPO / "bench/results/kernels.json"
KERNEL_ENV = REPO / ".kernel-env"
CODE = "print(1)"
EXPECTED = "1\n"
RUN_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The control plane allows 2 runs/s per connection (burst 10): the warm room spreads its runs
# over this many connections of its candidate so that pacing, not the limiter, sets the rate.
CONTROL_CONNECTIONS = 5
CONCURRENT_ROOMS = 10
WARM_POOL_SIZE = 1
TARGET_WARM_P50_MS = 30.0
TARGET_WARM_P99_MS = 100.0
TARGET_RATIO = 3.0


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run, resolved from the command line."""

    runs: int
    warmup: int
    gap_s: float
    rounds: int
    cold_samples: int
    out: Path
    profile: Path | None


def parse_args(argv: list[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="timed warm and floor runs (200; quick: 20)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 runs, 2 rounds")
    parser.add_argument("--gap-ms", type=float, default=100, help="pause between runs")
    parser.add_argument("--rounds", type=int, default=5, help="concurrent rounds")
    parser.add_argument("--cold", type=int, default=3, help="cold starts (one room each)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", type=Path, help="py-spy the server during the warm runs, to this file"
    )
    args = parser.parse_args(argv)
    if args.quick:
        return BenchConfig(args.runs or 20, 3, args.gap_ms / 1000, 2, 1, args.out, args.profile)
    runs = args.runs or 200
    gap_s = args.gap_ms / 1000
    return BenchConfig(runs, 10, gap_s, args.rounds, args.cold, args.out, args.profile)


# ---------------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Distribution of one latency, in milliseconds."""

    n: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: list[float]) -> Summary:
        top = max(values_ms, default=float("nan"))
        return cls(len(values_ms), percentile(values_ms, 50), percentile(values_ms, 99), top)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------- clients


@dataclass
class RunWatch:
    """Client-side ``perf_counter`` stamps of one run, taken as document updates arrive."""

    index: int  # position of the run's execution record in ``outputs``
    sent: float = 0.0
    acked: float | None = None
    record_seen: float | None = None
    first_output: float | None = None
    finished: float | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_ack(self, answer: Any = None) -> None:
        self.acked = time.perf_counter()
        if not (isinstance(answer, dict) and answer.get("ok")):
            self.error = f"run refused: {answer!r}"
            self.done.set()

    def observe(self, outputs: Array[Any], now: float) -> None:
        """Called after every applied update; ``now`` is when it was applied."""
        if len(outputs) <= self.index:
            return
        record = outputs[self.index]
        assert isinstance(record, Map)
        if self.record_seen is None:
            self.record_seen = now
        if self.first_output is None and any(o["type"] == "stream" for o in record["outputs"]):
            self.first_output = now
        if self.finished is None and record.get("status") != "running":
            self.finished = now
            self._check(record)
            self.done.set()

    def _check(self, record: Map[Any]) -> None:
        text = "".join(o["text"] for o in record["outputs"] if o["type"] == "stream")
        if record.get("status") != "ok" or text != EXPECTED or self.first_output is None:
            self.error = f"unexpected run: status {record.get('status')!r}, output {text!r}"

    def latency_ms(self) -> float:
        assert self.first_output is not None
        return ms(self.first_output - self.sent)

    def phases_ms(self) -> dict[str, float]:
        """Send to ack, to the record appearing, to the first output, to the run's end."""
        stamps = {"ack": self.acked, "record": self.record_seen}
        stamps |= {"first_output": self.first_output, "finished": self.finished}
        return {k: ms(v - self.sent) for k, v in stamps.items() if v is not None}


class TimedDoc(YClient):
    """A ``YClient`` that hands every applied update, with its time, to the current watch."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.outputs = self.doc.get("outputs", type=Array)
        self.watch: RunWatch | None = None

    def _apply(self, update: bytes) -> None:
        super()._apply(update)
        now = time.perf_counter()
        if self.watch is not None:
            self.watch.observe(self.outputs, now)


@dataclass
class RoomClients:
    """One room seen by its candidate: a synced document and control connections."""

    room_id: str
    doc: TimedDoc
    controls: list[ControlClient]
    turn: int = 0

    @classmethod
    async def join(cls, server: ServerProcess, connections: int = 1) -> RoomClients:
        room_id = server.create_room(files={"main.py": CODE + "\n"})
        token = server.token(room_id, "candidate", "Cal")
        doc = TimedDoc(server.ws_url(room_id, token))
        await doc.connect()
        controls = [await ControlClient(server.url, token).connect() for _ in range(connections)]
        return cls(room_id, doc, controls)

    @property
    def execution(self) -> dict[str, Any]:
        """What the server told this room about code execution (enabled, sandboxed, ...)."""
        return dict(self.controls[0].welcome.get("execution", {}))

    async def send_run(self) -> RunWatch:
        """Emit ``run``, the stamps to be filled in as the document syncs."""
        control = self.controls[self.turn % len(self.controls)]
        self.turn += 1
        watch = RunWatch(index=len(self.doc.outputs))
        self.doc.watch = watch
        watch.sent = time.perf_counter()
        await control.sio.emit("run", {"file": "main.py", "code": CODE}, callback=watch.on_ack)
        return watch

    async def run(self) -> RunWatch:
        """One run, to its end as seen through the document."""
        watch = await self.send_run()
        return await finish(watch)

    async def close(self) -> None:
        await self.doc.close()
        for control in self.controls:
            await control.close()


async def finish(watch: RunWatch) -> RunWatch:
    await asyncio.wait_for(watch.done.wait(), RUN_TIMEOUT_S)
    if watch.error is not None:
        raise RuntimeError(watch.error)
    return watch


# ---------------------------------------------------------------------------------- servers


@contextlib.asynccontextmanager
async def running_server(pool_size: int) -> AsyncIterator[ServerProcess]:
    """``clarityhire serve`` with its default sandbox, Python kernels only, a pool of
    ``pool_size``; waits until the pool is filled and the server is idle."""
    data_dir = Path(tempfile.mkdtemp(prefix="clarityhire-bench-kernels-"))
    env = {
        "CLARITYHIRE_KERNEL_POOL_SIZE": str(pool_size),
        "CLARITYHIRE_KERNEL_LANGUAGES": "python",
        "CLARITYHIRE_RUN_TIMEOUT_SECONDS": str(RUN_TIMEOUT_S),
    }
    server = ServerProcess(data_dir, "sqlite", env)
    try:
        await asyncio.to_thread(server.start)
        await wait_idle(server, kernels=pool_size)
        yield server
    except BaseException:
        with contextlib.suppress(OSError):
            print(server.log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(server.env["CLARITYHIRE_KERNEL_RUNTIME_DIR"], ignore_errors=True)


def process_tree(root: int) -> Iterator[int]:
    """``root`` and all its descendants (kernels run below bubblewrap, below the server)."""
    todo = [root]
    while todo:
        pid = todo.pop()
        yield pid
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())


def read_proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return ""


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by one process; 0 if gone."""
    stat = read_proc(pid, "stat")
    if not stat:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by the live processes of the tree."""
    return sum(process_cpu_s(pid) for pid in process_tree(root))


@dataclass
class CpuMeter:
    """CPU used by the server process, by its kernels (the rest of its tree) and by this
    client process, from ``start()`` to ``per_run_ms()``."""

    server_pid: int
    start_s: dict[str, float] = field(default_factory=dict)

    def sample(self) -> dict[str, float]:
        server = process_cpu_s(self.server_pid)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "server": server,
            "kernels": tree_cpu_s(self.server_pid) - server,
            "client": usage.ru_utime + usage.ru_stime,
        }

    def start(self) -> None:
        self.start_s = self.sample()

    def per_run_ms(self, runs: int) -> dict[str, float]:
        end = self.sample()
        return {k: round((end[k] - self.start_s[k]) * 1000 / runs, 3) for k in end}


def kernel_uids(root: int) -> list[int]:
    """Host uids of the kernel processes (ipykernel, not their bubblewrap parents)."""
    uids = []
    for pid in process_tree(root):
        if "ipykernel_launcher" not in read_proc(pid, "cmdline"):
            continue
        if read_proc(pid, "comm").strip() == "bwrap":
            continue
        for line in read_proc(pid, "status").splitlines():
            if line.startswith("Uid:"):
                uids.append(int(line.split()[1]))
    return uids


async def wait_idle(server: ServerProcess, kernels: int, timeout_s: float = 180) -> None:
    """Wait for at least ``kernels`` kernels and two quiet seconds (< 5% of a core each)."""
    assert server.proc is not None
    pid = server.proc.pid
    deadline = time.monotonic() + timeout_s
    quiet, before = 0, tree_cpu_s(pid)
    while quiet < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not idle after {timeout_s:.0f} s ({kernels} kernels)")
        await asyncio.sleep(1.0)
        now = tree_cpu_s(pid)
        enough = len(kernel_uids(pid)) >= kernels
        quiet = quiet + 1 if enough and now - before < 0.05 else 0
        before = now


@contextlib.asynccontextmanager
async def profiled(pid: int, output: Path | None) -> AsyncIterator[None]:
    """Sample ``pid`` with py-spy (collapsed stacks, CPU only) while the block runs."""
    if output is None:
        yield
        return
    spy = REPO / ".venv/bin/py-spy"
    argv = [str(spy), "record", "--pid", str(pid), "--rate", "1000", "--nonblocking"]
    argv += ["--format", "raw", "--output", str(output)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    await asyncio.sleep(1.0)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        if not await asyncio.to_thread(output.exists):
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')}")


def profile_top(path: Path, count: int = 20) -> list[tuple[str, float]]:
    """Functions by the share of CPU samples they appear in (inclusive), leaving out the
    frames that are in every sample of their threads (the event loop and what runs it)."""
    per_frame: Counter[str] = Counter()
    per_root: Counter[str] = Counter()
    roots_of: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames, samples = stack.split(";"), int(count_text)
        per_root[frames[0]] += samples
        for frame in set(frames):
            per_frame[frame] += samples
            roots_of.setdefault(frame, set()).add(frames[0])
    total = sum(per_root.values())
    shown = [
        (frame, n)
        for frame, n in per_frame.most_common()
        if n < sum(per_root[root] for root in roots_of[frame])
    ]
    return [(frame, round(n / total, 3)) for frame, n in shown[:count]]


# ---------------------------------------------------------------------------------- scenarios


@dataclass
class FloorResult:
    first_output_ms: list[float]
    idle_ms: list[float]


@contextlib.asynccontextmanager
async def local_kernel() -> AsyncIterator[AsyncKernelClient]:
    """A plain ipykernel from ``.kernel-env``: the server's kernelspec, no sandbox."""
    folder = Path(tempfile.mkdtemp(prefix="clarityhire-bench-floor-"))
    KernelSpecs(folder / "specs", KERNEL_ENV, ("python",)).write()
    manager = AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(folder / "specs")], ensure_native_kernel=False
        ),
        transport="ipc",
        ip=str(folder / "ipc"),
        connection_file=str(folder / "kernel.json"),
    )
    await manager.start_kernel(cwd=str(folder), stdout=subprocess.DEVNULL)
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
        shutil.rmtree(folder, ignore_errors=True)


async def floor_run(client: AsyncKernelClient) -> tuple[float, float]:
    """One ``print(1)``: seconds to its first stream message and to ``idle``."""
    sent = time.perf_counter()
    msg_id = client.execute(CODE, allow_stdin=True, store_history=True)
    first = None
    while True:
        msg = await client.get_iopub_msg(timeout=RUN_TIMEOUT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        now = time.perf_counter()
        if msg["msg_type"] == "stream" and first is None:
            first = now
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            if first is None:
                raise RuntimeError("print(1) gave no stream output")
            return first - sent, now - sent


async def measure_floor(config: BenchConfig) -> FloorResult:
    result = FloorResult([], [])
    async with local_kernel() as client:
        for i in range(config.warmup + config.runs):
            first, idle = await floor_run(client)
            if i >= config.warmup:
                result.first_output_ms.append(ms(first))
                result.idle_ms.append(ms(idle))
            await asyncio.sleep(config.gap_s)
    return result


@dataclass
class WarmResult:
    pooled_first_run_ms: float  # the room's first run, which takes a kernel from the pool
    runs: list[RunWatch]
    execution: dict[str, Any]
    kernel_uids: list[int]
    cpu_ms_per_run: dict[str, float]


async def measure_warm(config: BenchConfig) -> WarmResult:
    """One room, its kernel taken from the pool and up; runs one after another."""
    async with running_server(pool_size=WARM_POOL_SIZE) as server:
        room = await RoomClients.join(server, CONTROL_CONNECTIONS)
        try:
            first = await room.run()
            await wait_idle(server, kernels=WARM_POOL_SIZE + 1)  # the pool has refilled
            for _ in range(config.warmup):
                await room.run()
                await asyncio.sleep(config.gap_s)
            assert server.proc is not None
            cpu = CpuMeter(server.proc.pid)
            runs = []
            async with profiled(server.proc.pid, config.profile):
                cpu.start()
                for _ in range(config.runs):
                    runs.append(await room.run())
                    await asyncio.sleep(config.gap_s)
                used = cpu.per_run_ms(config.runs)
            uids = kernel_uids(server.proc.pid)
        finally:
            await room.close()
    return WarmResult(first.latency_ms(), runs, room.execution, uids, used)


@dataclass
class ConcurrentResult:
    first_round: list[RunWatch]  # every room's first run: kernels taken from the pool
    rounds: list[RunWatch]


async def run_round(rooms: list[RoomClients]) -> list[RunWatch]:
    """Every room sends ``run`` at once."""
    watches = await asyncio.gather(*(room.send_run() for room in rooms))
    return list(await asyncio.gather(*(finish(watch) for watch in watches)))


async def measure_concurrent(config: BenchConfig) -> ConcurrentResult:
    async with running_server(pool_size=CONCURRENT_ROOMS) as server:
        rooms = [await RoomClients.join(server) for _ in range(CONCURRENT_ROOMS)]
        try:
            first = await run_round(rooms)
            await wait_idle(server, kernels=2 * CONCURRENT_ROOMS)
            timed: list[RunWatch] = []
            for _ in range(config.rounds):
                # each room's one connection may send 2 runs/s: keep rounds apart
                await asyncio.sleep(max(config.gap_s, 0.5))
                timed += await run_round(rooms)
        finally:
            for room in rooms:
                await room.close()
    return ConcurrentResult(first, timed)


async def measure_cold(config: BenchConfig) -> list[float]:
    """The first run of fresh rooms on a server without a pool: the kernel boots on demand."""
    samples = []
    async with running_server(pool_size=0) as server:
        for i in range(config.cold_samples):
            room = await RoomClients.join(server)
            try:
                samples.append((await room.run()).latency_ms())
            finally:
                await room.close()
            await wait_idle(server, kernels=i + 1)
    return samples


# ---------------------------------------------------------------------------------- report


@dataclass
class Report:
    """``kernels.json``: the headline numbers first, then breakdowns and raw samples."""

    warm_p50_ms: float
    warm_p99_ms: float
    cold_start_ms: float
    concurrent10_p50_ms: float
    floor_p50_ms: float
    floor_p99_ms: float
    ratio_warm_to_floor: float
    meets_target: bool
    warm_runs: int
    warm_max_ms: float
    pooled_first_run_ms: float
    concurrent10_p99_ms: float
    concurrent10_rounds: int
    concurrent10_first_round_p50_ms: float
    cold_start_samples_ms: list[float]
    floor_idle_p50_ms: float
    floor_idle_p99_ms: float
    warm_phases_p50_ms: dict[str, float]
    concurrent10_phases_p50_ms: dict[str, float]
    warm_cpu_ms_per_run: dict[str, float]
    pool_size: int
    concurrent_pool_size: int
    gap_ms: float
    sandboxed: bool
    execution: dict[str, Any]
    kernel_uids: list[int]
    profile: str | None
    machine: dict[str, Any]
    samples_ms: dict[str, list[float]]


def phases_p50(watches: list[RunWatch]) -> dict[str, float]:
    """p50 of each client-side stamp, in ms after sending ``run``."""
    keys = ("ack", "record", "first_output", "finished")
    return {k: round(percentile([w.phases_ms()[k] for w in watches], 50), 3) for k in keys}


def build_report(
    config: BenchConfig,
    floor: FloorResult,
    warm: WarmResult,
    concurrent: ConcurrentResult,
    cold: list[float],
    machine: dict[str, Any],
) -> Report:
    warm_ms = [run.latency_ms() for run in warm.runs]
    concurrent_ms = [run.latency_ms() for run in concurrent.rounds]
    first_round_ms = [run.latency_ms() for run in concurrent.first_round]
    w, c = Summary.of(warm_ms), Summary.of(concurrent_ms)
    f, fi = Summary.of(floor.first_output_ms), Summary.of(floor.idle_ms)
    ratio = round(w.p50 / f.p50, 2)
    meets = w.p50 < TARGET_WARM_P50_MS and w.p99 < TARGET_WARM_P99_MS and ratio <= TARGET_RATIO
    confined = bool(warm.kernel_uids) and all(uid != 0 for uid in warm.kernel_uids)
    return Report(
        warm_p50_ms=round(w.p50, 3),
        warm_p99_ms=round(w.p99, 3),
        cold_start_ms=round(percentile(cold, 50), 3),
        concurrent10_p50_ms=round(c.p50, 3),
        floor_p50_ms=round(f.p50, 3),
        floor_p99_ms=round(f.p99, 3),
        ratio_warm_to_floor=ratio,
        meets_target=meets,
        warm_runs=w.n,
        warm_max_ms=round(w.max, 3),
        pooled_first_run_ms=warm.pooled_first_run_ms,
        concurrent10_p99_ms=round(c.p99, 3),
        concurrent10_rounds=config.rounds,
        concurrent10_first_round_p50_ms=round(percentile(first_round_ms, 50), 3),
        cold_start_samples_ms=cold,
        floor_idle_p50_ms=round(fi.p50, 3),
        floor_idle_p99_ms=round(fi.p99, 3),
        warm_phases_p50_ms=phases_p50(warm.runs),
        concurrent10_phases_p50_ms=phases_p50(concurrent.rounds),
        warm_cpu_ms_per_run=warm.cpu_ms_per_run,
        pool_size=WARM_POOL_SIZE,
        concurrent_pool_size=CONCURRENT_ROOMS,
        gap_ms=config.gap_s * 1000,
        sandboxed=bool(warm.execution.get("sandboxed")) and confined,
        execution=warm.execution,
        kernel_uids=sorted(set(warm.kernel_uids)),
        profile=str(config.profile) if config.profile else None,
        machine=machine,
        samples_ms={
            "warm": warm_ms,
            "floor": floor.first_output_ms,
            "floor_idle": floor.idle_ms,
            "concurrent10": concurrent_ms,
            "concurrent10_first_round": first_round_ms,
        },
    )


def machine_info() -> dict[str, Any]:
    """Where and on what this ran: cores, load, the source revision (dirty or not)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.rstrip("\n")  # porcelain lines start with a meaningful space

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_files": git("status", "--porcelain").splitlines(),
    }


def table(report: Report) -> str:
    """The printed summary."""
    s = report.samples_ms
    rows = [
        ("floor: jupyter_client execute -> stream", s["floor"]),
        ("floor: jupyter_client execute -> idle", s["floor_idle"]),
        ("warm: run -> first output in doc", s["warm"]),
        ("concurrent10: 10 rooms at once", s["concurrent10"]),
        ("concurrent10, first round (from pool)", s["concurrent10_first_round"]),
        ("cold start (pool 0): first run", report.cold_start_samples_ms),
    ]
    lines = [f"{'scenario':<42} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"]
    for name, values in rows:
        x = Summary.of(values)
        lines.append(f"{name:<42} {x.n:>4} {x.p50:>9.2f} {x.p99:>9.2f} {x.max:>9.2f}")

    def joined(values: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in values.items())

    verdict = "meets" if report.meets_target else "misses"
    lines += [
        "",
        f"warm, p50 ms after send: {joined(report.warm_phases_p50_ms)}",
        f"concurrent10, p50 ms after send: {joined(report.concurrent10_phases_p50_ms)}",
        f"warm, CPU ms per run: {joined(report.warm_cpu_ms_per_run)}",
        f"pooled first run: {report.pooled_first_run_ms:.2f} ms; sandboxed: {report.sandboxed}",
        f"warm / floor p50: {report.ratio_warm_to_floor:.2f}x; {verdict} the target "
        f"(p50 < {TARGET_WARM_P50_MS:g} ms, p99 < {TARGET_WARM_P99_MS:g} ms, "
        f"<= {TARGET_RATIO:g}x floor)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


async def timed(name: str, step: Awaitable[T]) -> T:
    """Await one scenario, saying how long it took."""
    started = time.monotonic()
    print(f"{name} ...", end=" ", flush=True)
    result = await step
    print(f"{time.monotonic() - started:.0f} s", flush=True)
    return result


async def run_all(config: BenchConfig) -> Report:
    machine = machine_info()
    floor = await timed("floor", measure_floor(config))
    warm = await timed("warm", measure_warm(config))
    concurrent = await timed("concurrent10", measure_concurrent(config))
    cold = await timed("cold", measure_cold(config))
    machine["loadavg_end"] = list(os.getloadavg())
    return build_report(config, floor, warm, concurrent, cold, machine)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    report = asyncio.run(run_all(config))
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(asdict(report), indent=1) + "\n")
    print("\n" + table(report))
    if config.profile is not None:
        print(f"\nserver profile during the warm runs ({config.profile}), inclusive CPU share:")
        for frame, share in profile_top(config.profile):
            print(f"  {share:6.1%}  {frame}")
    print(f"\nwrote {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
