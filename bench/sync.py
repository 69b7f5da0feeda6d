#!/usr/bin/env python3
"""Document-sync benchmark: ClarityHire against pycrdt-websocket (and optionally Node y-websocket).

For every server and scenario the script starts a fresh server process on a free 127.0.0.1
port (ours with a temporary data dir and its default durable SQLite store), prepares one URL
per room, runs the shared load generator ``yload.py`` from the harness venv, and stops the
server again. Scenarios:

* ``load``: R rooms x 3 clients, one typist per room sending single-character updates at
  10 updates/s, the two observers measure end-to-end latency (one run per ``--rooms`` value);
* ``join_storm``: one room whose history holds 20,000 single-character updates, then 50
  clients join at once and the time to synced is measured.

It prints a table and writes ``bench/results/sync.json`` (one row per server and scenario).
Only the standard library is used, so any Python 3.11 can run it; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
ANCHORS = Path("/tmp/anchors")
HOST = "127.0.0.1"
RESULTS = REPO / "bench/results/sync.json"
HARNESS_PYTHON = ANCHORS / "harness-venv/bin/python"
CLARITYHIRE_BIN = REPO / ".venv/bin/clarityhire"
SERVER_NAMES = ("clarityhire", "pycrdt", "node")


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs, resolved from the command line."""

    servers: tuple[str, ...]
    rooms: tuple[int, ...]
    clients: int
    rate: float
    seconds: float
    warmup: float
    drain: float
    procs: int
    join_storm: bool
    history: int
    joiners: int
    out: Path
    raw_out: Path | None
    yload: Path
    harness_python: Path
    clarityhire_bin: Path


@dataclass
class Row:
    """One line of ``sync.json``: one server under one scenario."""

    server: str
    scenario: str
    rooms: int
    clients_per_room: int
    rate: float | None
    updates_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_s: float | None
    cpu_us_per_delivered: float | None
    peak_rss_mb: float | None
    join_p50_ms: float | None = None
    join_max_ms: float | None = None
    history: int | None = None
    sent_per_s: float | None = None
    undelivered: int | None = None
    server_cpu_util: float | None = None
    client_cpu_util: list[float] = field(default_factory=list)
    machine_busy: float | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Poll ``check()`` until it is true; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during start-up")
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Server:
    """A server under test, run as a child process in its own temporary folder."""

    name = "server"
    text_in_map: str | None = None  # yload --text-in-map, when the text lives in a map

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        """argv, extra environment and working directory of the server process."""
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def start(self) -> None:
        argv, env, cwd = self.command()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self.ready, self.proc, 30, self.name)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Stop gracefully (SIGINT, as Ctrl-C), kill after 20 s; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def room_urls(self, count: int, tag: str) -> list[str]:
        """One WebSocket URL per room, for rooms the server should start with an empty text."""
        prefix = f"{tag}-{secrets.token_hex(3)}-"
        return [f"ws://{HOST}:{self.port}/{prefix}{i}" for i in range(count)]

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class ClarityHire(Server):
    """Our server: rooms with an empty ``main.py`` and candidate tokens made through the API."""

    name = "clarityhire"
    text_in_map = "files/main.py"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self.admin_key = secrets.token_urlsafe(24)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [
            str(self.config.clarityhire_bin),
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.workdir / "data"),
        ]
        return argv, {"CLARITYHIRE_ADMIN_KEY": self.admin_key}, self.workdir

    def ready(self) -> bool:
        try:
            return self._request("GET", "/healthz").get("status") == "ok"
        except (OSError, ValueError):
            return False

    def room_urls(self, count: int, tag: str) -> list[str]:
        return [self._new_room_url() for _ in range(count)]

    def _new_room_url(self) -> str:
        body = {"kind": "live", "language": "python", "files": {"main.py": ""}}
        room_id = self._request("POST", "/api/rooms", body)["id"]
        token = self._request(
            "POST", f"/api/rooms/{room_id}/tokens", {"role": "candidate", "name": "bench"}
        )["token"]
        return f"ws://{HOST}:{self.port}/rooms/{room_id}/doc?token={token}"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.admin_key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


class PycrdtWebsocket(Server):
    """pycrdt-websocket under uvicorn, as installed by setup_anchors.sh (room = URL path)."""

    name = "pycrdt"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [str(ANCHORS / "venv/bin/python"), str(ANCHORS / "pycrdt_server.py")]
        return argv, {"HOST": HOST, "PORT": str(self.port)}, ANCHORS


class NodeYWebsocket(Server):
    """The Node y-websocket server (@y/websocket-server 0.1.1) from setup_anchors.sh."""

    name = "node"

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = ["node", "node_modules/@y/websocket-server/src/server.js"]
        return argv, {"HOST": HOST, "PORT": str(self.port)}, ANCHORS / "ywss"


SERVER_CLASSES: dict[str, type[Server]] = {
    cls.name: cls for cls in (ClarityHire, PycrdtWebsocket, NodeYWebsocket)
}


# ------------------------------------------------------------------------------------ yload


@dataclass(frozen=True)
class Scenario:
    """One yload invocation: a load run over ``rooms`` rooms, or the join storm."""

    kind: str  # "load" or "join_storm"
    rooms: int

    @property
    def label(self) -> str:
        return f"load {self.rooms} rooms" if self.kind == "load" else "join storm"


def yload_args(config: BenchConfig, scenario: Scenario) -> list[str]:
    """The scenario-specific part of the yload command line."""
    if scenario.kind == "join_storm":
        return ["--join-storm", "--history", str(config.history), "--joiners", str(config.joiners)]
    return [
        "--rooms",
        str(scenario.rooms),
        "--clients",
        str(config.clients),
        "--rate",
        str(config.rate),
        "--seconds",
        str(config.seconds),
        "--warmup",
        str(config.warmup),
        "--drain",
        str(config.drain),
        "--procs",
        str(config.procs),
    ]


def run_yload(config: BenchConfig, server: Server, scenario: Scenario) -> dict[str, Any]:
    """Run yload against a started server; returns its JSON result (raises on failure)."""
    urls = server.room_urls(scenario.rooms, scenario.kind)
    urls_file = server.workdir / "urls.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    json_out = server.workdir / "yload.jsonl"
    argv = [
        str(config.harness_python),
        str(config.yload),
        "--urls-file",
        str(urls_file),
        "--server-pid",
        str(server.pid),
        "--json-out",
        str(json_out),
        "--label",
        f"{server.name} {scenario.label}",
        *yload_args(config, scenario),
    ]
    # yload's join storm cannot verify deferred sync replies with --text-in-map (its check reads
    # the text before resolving it), so the storm types into the root Y.Text "source" everywhere.
    if server.text_in_map and scenario.kind == "load":
        argv += ["--text-in-map", server.text_in_map]
    timeout = 300 + config.warmup + config.seconds + config.drain
    print(f"$ {shlex.join(argv)}", flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    sys.stdout.write(indent(done.stdout))
    if done.returncode != 0 or not json_out.exists():
        raise RuntimeError(f"yload exited with {done.returncode}:\n{indent(done.stderr[-3000:])}")
    return dict(json.loads(json_out.read_text().splitlines()[-1]))


def indent(text: str, prefix: str = "    ") -> str:
    return "".join(prefix + line + "\n" for line in text.splitlines())


# ------------------------------------------------------------------------------------- rows


def ratio_us(cpu_s: float | None, count: int | None) -> float | None:
    if cpu_s is None or not count:
        return None
    return round(cpu_s / count * 1e6, 1)


def load_row(name: str, config: BenchConfig, res: dict[str, Any]) -> Row:
    """A row from a yload load-mode result."""
    delivery, latency, srv = res["delivery"], res["latency_ms"], res.get("server", {})
    cpu = srv.get("cpu_s_window")
    return Row(
        server=name,
        scenario="load",
        rooms=res["params"]["rooms"],
        clients_per_room=config.clients,
        rate=config.rate,
        updates_per_s=delivery["delivered_per_s"],
        p50_ms=latency.get("p50"),
        p99_ms=latency.get("p99"),
        server_cpu_s=cpu,
        cpu_us_per_delivered=ratio_us(cpu, delivery["delivered"]),
        peak_rss_mb=srv.get("vm_hwm_mb"),
        sent_per_s=delivery["sent_per_s"],
        undelivered=delivery["undelivered"],
        server_cpu_util=srv.get("cpu_util_window"),
        client_cpu_util=res["client"]["cpu_util_per_proc"],
        machine_busy=res["machine"].get("busy_frac_window"),
        flags=res["flags"],
    )


def storm_row(name: str, config: BenchConfig, res: dict[str, Any]) -> Row:
    """A row from a yload join-storm result; p50/p99 are the joiners' time to synced."""
    storm, srv = res["storm"], res.get("server", {})
    synced = storm["time_to_synced_ms"]
    return Row(
        server=name,
        scenario="join_storm",
        rooms=1,
        clients_per_room=config.joiners,
        rate=None,
        updates_per_s=None,
        p50_ms=synced.get("p50"),
        p99_ms=synced.get("p99"),
        server_cpu_s=srv.get("cpu_s_storm"),
        cpu_us_per_delivered=None,
        peak_rss_mb=srv.get("vm_hwm_mb"),
        join_p50_ms=synced.get("p50"),
        join_max_ms=synced.get("max"),
        history=config.history,
        machine_busy=res["machine"].get("busy_frac_storm"),
        flags=res["flags"],
    )


def failed_row(name: str, config: BenchConfig, scenario: Scenario, error: str) -> Row:
    storm = scenario.kind == "join_storm"
    return Row(
        server=name,
        scenario=scenario.kind,
        rooms=scenario.rooms,
        clients_per_room=config.joiners if storm else config.clients,
        rate=None if storm else config.rate,
        updates_per_s=None,
        p50_ms=None,
        p99_ms=None,
        server_cpu_s=None,
        cpu_us_per_delivered=None,
        peak_rss_mb=None,
        history=config.history if storm else None,
        flags=["FAILED"],
        error=error,
    )


# -------------------------------------------------------------------------------- the run


def run_scenario(config: BenchConfig, name: str, scenario: Scenario) -> Row:
    """Start a fresh server, run one scenario against it, stop it; never raises."""
    server = SERVER_CLASSES[name](config)
    print(f"\n== {name}: {scenario.label}", flush=True)
    try:
        server.start()
        res = run_yload(config, server, scenario)
        if config.raw_out is not None:
            with open(config.raw_out, "a") as raw:
                raw.write(json.dumps({"server": name, **res}) + "\n")
        row = (storm_row if scenario.kind == "join_storm" else load_row)(name, config, res)
        if not server.alive():
            row.flags.append("SERVER_EXITED")
            row.error = f"server exited early:\n{server.log_tail()}"
    except Exception as e:  # a failing server or harness becomes a FAILED row, with evidence
        error = f"{type(e).__name__}: {e}"
        tail = server.log_tail()
        if tail:
            error += f"\nserver log tail:\n{tail}"
        print(indent(error), flush=True)
        row = failed_row(name, config, scenario, error)
    finally:
        code = server.stop()
    if code not in (0, None, -signal.SIGINT):
        row.flags.append(f"EXIT_{code}")
    server.cleanup()
    return row


def scenarios(config: BenchConfig) -> list[Scenario]:
    runs = [Scenario("load", rooms) for rooms in config.rooms]
    if config.join_storm:
        runs.append(Scenario("join_storm", 1))
    return runs


def run_all(config: BenchConfig) -> list[Row]:
    """Every scenario against every server, servers alternating within a scenario."""
    return [
        run_scenario(config, name, scenario)
        for scenario in scenarios(config)
        for name in config.servers
    ]


def ensure_anchors(config: BenchConfig) -> None:
    """Install the anchor servers and harness venv with setup_anchors.sh when missing."""
    needed = [ANCHORS / "venv/bin/python", ANCHORS / "pycrdt_server.py", config.harness_python]
    if "node" in config.servers:
        needed.append(ANCHORS / "ywss/node_modules/@y/websocket-server/src/server.js")
    if all(path.exists() for path in needed):
        return
    script = config.yload.parent / "setup_anchors.sh"
    print(f"installing anchors: bash {script}", flush=True)
    subprocess.run(["bash", str(script)], check=True)


# ------------------------------------------------------------------------------- reporting

COLUMNS = (
    ("server", "server", "{}"),
    ("scenario", "scenario", "{}"),
    ("rooms", "rooms", "{}"),
    ("clients", "clients_per_room", "{}"),
    ("upd/s", "updates_per_s", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("cpu s", "server_cpu_s", "{:.2f}"),
    ("us/deliv", "cpu_us_per_delivered", "{:.0f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("join p50", "join_p50_ms", "{:.0f}"),
    ("join max", "join_max_ms", "{:.0f}"),
)


def cell(row: Row, key: str, fmt: str) -> str:
    value = getattr(row, key)
    return "-" if value is None else fmt.format(value)


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows (flags in the last column)."""
    head = [title for title, _, _ in COLUMNS] + ["flags"]
    body = [
        [cell(row, key, fmt) for _, key, fmt in COLUMNS] + [", ".join(row.flags) or "-"]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def fmt_line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt_line(head), rule, *(fmt_line(line) for line in body)])


def write_results(path: Path, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")


# ------------------------------------------------------------------------------------- CLI


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SERVER_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown server(s) {unknown}; known: {SERVER_NAMES}")
    return names


QUICK_DEFAULTS: dict[str, Any] = {
    "rooms": "10",
    "seconds": 3.0,
    "warmup": 1.0,
    "drain": 2.0,
    "history": 2000,
    "joiners": 10,
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--servers",
        type=name_list,
        default="clarityhire,pycrdt",
        help=f"comma-separated, from {', '.join(SERVER_NAMES)}",
    )
    ap.add_argument("--with-node", action="store_true", help="also run Node y-websocket")
    ap.add_argument(
        "--rooms",
        type=int_list,
        default="200",
        help="comma-separated room counts, one load run each (e.g. 50,200,400)",
    )
    ap.add_argument("--clients", type=int, default=3, help="clients per room (one typist)")
    ap.add_argument("--rate", type=float, default=10.0, help="typist updates/s per room")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    ap.add_argument("--drain", type=float, default=3.0, help="seconds after the window")
    ap.add_argument("--procs", type=int, default=2, help="yload client processes")
    ap.add_argument("--skip-join-storm", action="store_true", help="only the load runs")
    ap.add_argument("--history", type=int, default=20000, help="join storm: prior updates")
    ap.add_argument("--joiners", type=int, default=50, help="join storm: clients joining")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run; changes the defaults to 10 rooms, 3 s (+1 s warmup), storm 2000/10",
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help="rows as JSON")
    ap.add_argument(
        "--raw-out",
        type=Path,
        default=None,
        help="also append yload's full JSON results here (JSON lines)",
    )
    ap.add_argument(
        "--shared-bench",
        type=Path,
        default=SHARED_BENCH,
        help="folder holding yload.py and setup_anchors.sh",
    )
    ap.add_argument(
        "--harness-python", type=Path, default=HARNESS_PYTHON, help="python that runs yload"
    )
    ap.add_argument(
        "--clarityhire-bin", type=Path, default=CLARITYHIRE_BIN, help="our server's command"
    )
    return ap


def parse_args(argv: list[str] | None) -> BenchConfig:
    """The run's configuration; ``--quick`` lowers the defaults, explicit options still win."""
    ap = build_parser()
    if ap.parse_known_args(argv)[0].quick:
        ap.set_defaults(**QUICK_DEFAULTS)
    a = ap.parse_args(argv)
    servers = a.servers + (("node",) if a.with_node and "node" not in a.servers else ())
    return BenchConfig(
        servers=servers,
        rooms=a.rooms,
        clients=a.clients,
        rate=a.rate,
        seconds=a.seconds,
        warmup=a.warmup,
        drain=a.drain,
        procs=a.procs,
        join_storm=not a.skip_join_storm,
        history=a.history,
        joiners=a.joiners,
        out=a.out,
        raw_out=a.raw_out,
        yload=a.shared_bench / "yload.py",
        harness_python=a.harness_python,
        clarityhire_bin=a.clarityhire_bin,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    ensure_anchors(config)
    if config.raw_out is not None:
        config.raw_out.unlink(missing_ok=True)
    rows = run_all(config)
    write_results(config.out, rows)
    print("\n" + table(rows))
    print(f"\nwrote {config.out}")
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
