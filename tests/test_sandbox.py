"""The kernel sandbox, from the candidate's side: plain Python snippets run through it.

Each test runs ``<project>/.kernel-env/bin/python -c ...`` with the argv, environment and
``preexec_fn`` that ``kernels.sandbox`` produces, and checks what a candidate (or an attacker)
would notice. No test sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kernels.sandbox import (
    Sandbox,
    SandboxCommand,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
)

ROOT = Path(__file__).resolve().parent.parent
KERNEL_ENV = ROOT / ".kernel-env"
UID = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops from root")


@pytest.fixture(scope="session")
def kernel_env() -> Path:
    """The world-readable kernel environment, built by `make kernel-env` when missing."""
    if not (KERNEL_ENV / ".installed-stamp").exists():
        subprocess.run(["make", "kernel-env"], cwd=ROOT, check=True, timeout=600)
    return KERNEL_ENV


@pytest.fixture(scope="session")
def base_dir() -> Iterator[Path]:
    """A folder uid 65534 may search (pytest's tmp_path is under a 0700 folder)."""
    base = Path(tempfile.mkdtemp(prefix="clarityhire-sandbox-test-", dir="/tmp"))
    os.chmod(base, 0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox(kernel_env: Path) -> Sandbox:
    """The sandbox as the server would configure it; refuses to test a broken one."""
    box = Sandbox(
        kernel_env=kernel_env,
        kernel_uid=UID,
        kernel_gid=UID,
        limits=SandboxLimits(memory_bytes=512 * 1024 * 1024, max_processes=64),
    )
    box.check_available()
    return box


class Room:
    """One room's working folder and connection folder, prepared for a sandbox."""

    def __init__(self, base: Path, sandbox: Sandbox) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="room-", dir=base))
        os.chmod(self.path, 0o711)
        self.workdir = self.path / "work"
        self.conn = self.path / "conn"
        sandbox.prepare_dirs(self.workdir, self.conn)

    def command(self, sandbox: Sandbox, code: str, *args: str) -> SandboxCommand:
        return sandbox.command(
            [str(sandbox.python), "-c", textwrap.dedent(code), *args], self.workdir, self.conn
        )


@pytest.fixture
def room(base_dir: Path, sandbox: Sandbox) -> Room:
    return Room(base_dir, sandbox)


def run(
    sandbox: Sandbox,
    room: Room,
    code: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` sandboxed and wait (bounded) for it."""
    cmd = room.command(sandbox, code, *args)
    kwargs = cmd.popen_kwargs()
    if env is not None:
        kwargs["env"] = env
    return subprocess.run(
        cmd.argv,
        **kwargs,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(sandbox: Sandbox, room: Room, code: str, env: dict[str, str] | None = None) -> object:
    """Run ``code`` sandboxed; it must succeed and print one JSON line last."""
    done = run(sandbox, room, code, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def uid_processes(uid: int, marker: str) -> list[int]:
    """Host pids of uid's processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        if int(real_uid) == uid and marker.encode() in cmdline:
            found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- who the code is, what it sees ---------------------------------------------------------------


def test_runs_as_the_kernel_uid_and_sees_no_host_process(sandbox: Sandbox, room: Room) -> None:
    seen = run_json(
        sandbox,
        room,
        """
        import json, os
        cmdlines = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                cmdlines.append(open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace"))
        print(json.dumps({
            "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
            "pid": os.getpid(), "cwd": os.getcwd(), "home": os.path.expanduser("~"),
            "cmdlines": cmdlines,
            "caps": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1],
        }))
        """,
    )
    assert isinstance(seen, dict)
    assert seen["ids"] == [UID, UID, UID, UID, []]  # no supplementary group
    assert seen["caps"] == "0000000000000000"
    assert seen["cwd"] == seen["home"] == "/workspace"
    # pid namespace: bwrap's pid 1 and the snippet itself, nothing of the host (no pytest, no init)
    assert seen["pid"] == 2
    assert len(seen["cmdlines"]) == 2, seen["cmdlines"]
    assert not any("pytest" in c or "systemd" in c for c in seen["cmdlines"])


def test_cannot_read_the_server_database_or_settings(
    sandbox: Sandbox, room: Room, base_dir: Path
) -> None:
    # World-readable on purpose: only the sandbox's mount namespace stands in the way.
    data = base_dir / "server-data"
    data.mkdir(mode=0o755, exist_ok=True)
    (data / "clarityhire.db").write_text("SQLite format 3 ... admin_key=topsecret")
    (data / "settings.toml").write_text('secret_key = "topsecret"\n')
    os.chmod(data / "clarityhire.db", 0o644)
    os.chmod(data / "settings.toml", 0o644)
    targets = [
        str(data / "clarityhire.db"),
        str(data / "settings.toml"),
        str(room.workdir),  # the room's own folder is only at /workspace
        str(ROOT / "pyproject.toml"),
        str(ROOT / "var"),
        str(ROOT / "config" / "defaults.toml"),
        "/root",
        "/home",
        "/var",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/hostname",
        "/sys",
    ]
    seen = run_json(
        sandbox,
        room,
        f"""
        import json, os
        out = {{}}
        for path in {targets!r}:
            try:
                with open(path, "rb") as f:
                    out[path] = "READ " + f.read(64).decode(errors="replace")
            except OSError as e:
                out[path] = type(e).__name__ + (" exists" if os.path.lexists(path) else "")
        print(json.dumps(out))
        """,
    )
    assert isinstance(seen, dict)
    for path in targets:
        assert seen[path] == "FileNotFoundError", (path, seen[path])


@pytest.mark.parametrize("popen_env", ["sandbox env", "server env (integrator forgot env=)"])
def test_server_secrets_are_not_in_any_environment(
    sandbox: Sandbox, room: Room, popen_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLARITYHIRE_ADMIN_KEY", "topsecret")
    monkeypatch.setenv("CLARITYHIRE_SECRET_KEY", "topsecret2")
    env = None if popen_env == "sandbox env" else dict(os.environ)
    seen = run_json(
        sandbox,
        room,
        """
        import json, os
        leaks, readable = [], []
        blobs = {"os.environ": repr(dict(os.environ)).encode()}
        for p in os.listdir("/proc"):
            if p.isdigit() or p == "self":
                for what in ("environ", "cmdline"):
                    try:
                        blobs[f"/proc/{p}/{what}"] = open(f"/proc/{p}/{what}", "rb").read()
                        readable.append(f"/proc/{p}/{what}")
                    except OSError:
                        pass
        for where, blob in blobs.items():
            if b"top" b"secret" in blob or b"CLARITY" b"HIRE" in blob:  # not this code's own text
                leaks.append(where)
        print(json.dumps({"leaks": leaks, "readable": readable, "env": dict(os.environ)}))
        """,
        env=env,
    )
    assert isinstance(seen, dict)
    assert seen["leaks"] == []
    assert "/proc/1/environ" in seen["readable"]  # the check looked at bwrap's pid 1 too
    assert set(seen["env"]) <= {
        "PATH",
        "HOME",
        "LANG",
        "IPYTHONDIR",
        "TMPDIR",
        "MALLOC_ARENA_MAX",
        "PWD",
        "LC_CTYPE",
    }


# -- network ------------------------------------------------------------------------------------


def test_cannot_connect_to_a_server_on_the_host_loopback(sandbox: Sandbox, room: Room) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # reachable from here
            listener.accept()[0].close()
        done = run(
            sandbox,
            room,
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3)
                print("connected")
            except OSError as e:
                print(type(e).__name__)
            """,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "ConnectionRefusedError"
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing arrived from the sandbox
            listener.accept()


def test_only_a_private_loopback_interface(sandbox: Sandbox, room: Room) -> None:
    seen = run_json(
        sandbox,
        room,
        """
        import json, socket
        def rows(path):
            try:
                return open(path).read().splitlines()
            except OSError:
                return []
        print(json.dumps({
            "ifaces": [name for _, name in socket.if_nameindex()],
            "dev": [l.split(":")[0].strip() for l in rows("/proc/net/dev")[2:]],
            "routes": rows("/proc/net/route")[1:],
            "routes6": [l for l in rows("/proc/net/ipv6_route") if not l.rstrip().endswith("lo")],
            "hostname": socket.gethostname(),
        }))
        """,
    )
    assert isinstance(seen, dict)
    assert seen["ifaces"] == ["lo"]
    assert seen["dev"] == ["lo"]
    assert seen["routes"] == []  # no default route, no route anywhere off the box
    assert seen["routes6"] == []
    assert seen["hostname"] == "sandbox"


# -- files --------------------------------------------------------------------------------------


def test_writes_only_inside_the_working_folder(
    sandbox: Sandbox, room: Room, base_dir: Path
) -> None:
    name = f"sandbox-probe-{secrets.token_hex(4)}"
    outside = [
        f"/{name}",
        f"/usr/{name}",
        f"/etc/{name}",
        f"/dev/{name}",
        f"{sandbox.kernel_env}/{name}",
        f"{base_dir}/{name}",
        f"{ROOT}/{name}",
    ]
    seen = run_json(
        sandbox,
        room,
        f"""
        import json, os
        out = {{}}
        for path in {outside!r} + ["/workspace/{name}", "/tmp/{name}"]:
            try:
                with open(path, "w") as f:
                    f.write("x")
                out[path] = "written"
            except OSError as e:
                out[path] = type(e).__name__
        print(json.dumps(out))
        """,
    )
    assert isinstance(seen, dict)
    for path in outside:
        assert not Path(path).exists(), path  # nothing reached the host
        if not path.startswith("/tmp/"):  # (under /tmp it lands in the sandbox's own tmpfs)
            assert seen[path] in ("OSError", "PermissionError", "FileNotFoundError"), path
    assert seen[f"/workspace/{name}"] == "written"
    assert not (room.workdir / name).exists()  # the workspace is the sandbox's own tmpfs
    # /tmp is the sandbox's own scratch tmpfs: writable, but nothing reaches the host's /tmp
    assert seen[f"/tmp/{name}"] == "written"
    assert not Path(f"/tmp/{name}").exists()


def test_file_size_and_scratch_space_are_capped(
    sandbox: Sandbox, base_dir: Path, kernel_env: Path
) -> None:
    small = replace(
        sandbox,
        limits=replace(sandbox.limits, max_file_bytes=1024 * 1024, tmp_bytes=4 * 1024 * 1024),
    )
    room = Room(base_dir, small)
    seen = run_json(
        small,
        room,
        """
        import errno, json
        out = {}
        try:
            with open("/workspace/big", "wb") as f:
                f.write(b"x" * (2 * 1024 * 1024))
            out["file"] = "written"
        except OSError as e:
            out["file"] = errno.errorcode[e.errno]
        written = 0
        try:
            for i in range(8):  # at most 8 files of 1 MiB in a 4 MiB tmpfs
                with open(f"/tmp/part{i}", "wb") as f:
                    f.write(b"x" * (1024 * 1024 - 4096))
                written += 1
            out["tmp"] = "written"
        except OSError as e:
            out["tmp"] = errno.errorcode[e.errno]
        out["tmp_files"] = written
        print(json.dumps(out))
        """,
    )
    assert isinstance(seen, dict)
    assert seen["file"] == "EFBIG"
    assert seen["tmp"] == "ENOSPC"
    assert 2 <= seen["tmp_files"] < 5


# -- processes, memory, cpu ---------------------------------------------------------------------


def test_fork_bomb_stops_at_the_cap_and_the_sandbox_recovers(
    sandbox: Sandbox, base_dir: Path
) -> None:
    # A host uid of its own (seen as 65534 inside): the cap counts a uid machine-wide, and
    # kernels of other tests running as 65534 must neither eat this cap nor lose theirs to it.
    sandbox = replace(sandbox, kernel_uid=64100, kernel_gid=64100, sandbox_uid=UID, sandbox_gid=UID)
    room = Room(base_dir, sandbox)
    marker = f"forkbomb-{secrets.token_hex(4)}"
    started = time.monotonic()
    done = run(
        sandbox,
        room,
        """
        import os, sys, time
        forked, start = 0, time.monotonic()
        try:
            for _ in range(500):
                if time.monotonic() - start > 20:  # hard stop
                    break
                if os.fork() == 0:
                    time.sleep(2)
                    os._exit(0)
                forked += 1
        except BlockingIOError:
            print("capped", forked, flush=True)
            sys.exit(3)
        print("not capped", forked, flush=True)
        """,
        marker,
        timeout=60,
    )
    assert done.returncode == 3, (done.stdout, done.stderr)
    words = done.stdout.split()
    assert words[0] == "capped"
    assert 10 <= int(words[1]) < sandbox.limits.max_processes
    assert time.monotonic() - started < 30
    # The snippet exited: its pid namespace went with it, sleeping children included.
    assert wait_until(lambda: not uid_processes(64100, marker), timeout=10)
    done = run(sandbox, room, "print('still works')")
    assert (done.returncode, done.stdout.strip()) == (0, "still works"), done.stderr


HOLD_PROCESSES = """
import os, sys, time
wanted, hold = int(sys.argv[1]), float(sys.argv[2])
forked = 0
try:
    for _ in range(wanted):
        if os.fork() == 0:
            time.sleep(hold)
            os._exit(0)
        forked += 1
except BlockingIOError:
    pass
print(os.getuid(), forked, flush=True)
time.sleep(hold)
"""


def test_each_kernel_uid_has_its_own_process_cap(sandbox: Sandbox, base_dir: Path) -> None:
    """The cap counts a uid machine-wide: a kernel sharing a uid shares it, another uid not."""
    limits = replace(sandbox.limits, max_processes=40)
    first = replace(sandbox, kernel_uid=64101, kernel_gid=64101, limits=limits)
    same_uid = replace(first)
    other_uid = replace(first, kernel_uid=64102, kernel_gid=64102, sandbox_uid=UID, sandbox_gid=UID)
    holder_room = Room(base_dir, first)
    cmd = holder_room.command(first, HOLD_PROCESSES, "30", "20")
    holder = subprocess.Popen(
        cmd.argv, **cmd.popen_kwargs(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().split() == [b"64101", b"30"]
        done = run(same_uid, Room(base_dir, same_uid), HOLD_PROCESSES, "20", "0.1")
        if done.returncode == 0:  # bwrap itself may not even get to fork
            assert int(done.stdout.split()[1]) < 10
        done = run(other_uid, Room(base_dir, other_uid), HOLD_PROCESSES, "20", "0.1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str(UID), "20"]  # 64102 outside, 65534 inside
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_memory_grab_stops_at_the_cap_with_memoryerror(sandbox: Sandbox, room: Room) -> None:
    done = run(
        sandbox,
        room,
        """
        chunks = []
        try:
            for _ in range(40):  # up to 4 GB in 100 MB steps
                chunks.append(bytearray(100 * 1000 * 1000))
            print("not capped", len(chunks) * 100)
        except MemoryError:
            print("MemoryError at", len(chunks) * 100)
        """,
    )
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[0] == "MemoryError", done.stdout
    assert 100 <= int(words[2]) < 512


def test_cpu_time_is_capped(sandbox: Sandbox, base_dir: Path) -> None:
    quick = replace(sandbox, limits=replace(sandbox.limits, cpu_seconds=1))
    room = Room(base_dir, quick)
    started = time.monotonic()
    done = run(quick, room, "while True: pass", timeout=30)
    assert done.returncode != 0
    assert time.monotonic() - started < 15


# -- lifetime -----------------------------------------------------------------------------------


def test_sandbox_dies_when_its_popen_is_killed(sandbox: Sandbox, room: Room) -> None:
    marker = f"orphan-{secrets.token_hex(4)}"
    cmd = room.command(
        sandbox,
        "import subprocess, time; subprocess.Popen(['sleep', '60']); print('up', flush=True);"
        " time.sleep(60)",
        marker,
    )
    proc = subprocess.Popen(
        cmd.argv, **cmd.popen_kwargs(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        assert uid_processes(UID, marker)
        proc.kill()
        proc.wait(10)
        assert wait_until(lambda: not uid_processes(UID, marker), timeout=10), uid_processes(
            UID, marker
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_sandbox_dies_with_the_server_process(sandbox: Sandbox, room: Room) -> None:
    """The server (the Popen's parent) is SIGKILLed: nothing of the sandbox may survive."""
    marker = f"orphan-{secrets.token_hex(4)}"
    code = "import time; print('up', flush=True); time.sleep(60)"
    server = textwrap.dedent(
        f"""
        import subprocess, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from kernels.sandbox import Sandbox
        box = Sandbox(Path({str(sandbox.kernel_env)!r}), kernel_uid={UID}, kernel_gid={UID})
        cmd = box.command(
            [str(box.python), "-c", {code!r}, {marker!r}],
            Path({str(room.workdir)!r}), Path({str(room.conn)!r}),
        )
        proc = subprocess.Popen(cmd.argv, **cmd.popen_kwargs(), stdin=subprocess.DEVNULL)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", server], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == b"up\n"
        assert uid_processes(UID, marker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not uid_processes(UID, marker), timeout=10), uid_processes(
            UID, marker
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


# -- a real kernel ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ipykernel_runs_sandboxed_over_ipc(sandbox: Sandbox, room: Room) -> None:
    """What the kernel pool does: ipc transport, connection file handed to the kernel uid."""
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    connect = pytest.importorskip("jupyter_client.connect")
    blocking = pytest.importorskip("jupyter_client.blocking")
    connection_file = room.conn / "kernel-test.json"
    connect.write_connection_file(
        fname=str(connection_file),
        transport="ipc",
        ip=str(room.conn / "kernel-test-ipc"),
        key=secrets.token_hex(16).encode(),
    )
    sandbox.hand_over(connection_file)
    cmd = sandbox.command(sandbox.kernel_argv(connection_file), room.workdir, room.conn)
    kernel = subprocess.Popen(
        cmd.argv,
        **cmd.popen_kwargs(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    client = blocking.BlockingKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        outputs: list[dict[str, Any]] = []
        reply = client.execute_interactive(
            "import os, socket; print(os.getuid(), os.getcwd(), socket.gethostname())",
            timeout=30,
            output_hook=outputs.append,
        )
        assert reply["content"]["status"] == "ok"
        text = "".join(m["content"]["text"] for m in outputs if m["header"]["msg_type"] == "stream")
        assert text.strip() == f"{UID} /workspace sandbox"
        assert not (room.workdir / ".ipython").exists()  # HOME stays the room's own files
    finally:
        client.stop_channels()
        kernel.kill()
        kernel.wait(10)
        assert kernel.stderr is not None
        kernel.stderr.close()


# -- set-up errors are explained ----------------------------------------------------------------


def test_check_available_names_the_missing_layer(kernel_env: Path, base_dir: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        Sandbox(kernel_env, bwrap="/nonexistent/bwrap").check_available()
    with pytest.raises(SandboxUnavailable, match="make kernel-env"):
        Sandbox(base_dir / "no-such-env").check_available()
    with pytest.raises(SandboxUnavailable, match="write_etc"):
        Sandbox(kernel_env, etc_dir=base_dir / "etc-never-written").check_available()
    box = Sandbox(kernel_env)
    userns = box.explain_failure(
        "bwrap: No permissions to creating new namespace, likely because the kernel does not"
        " allow non-privileged user namespaces."
    )
    assert "user namespaces are not available" in userns
    assert "user namespaces are not available" in box.explain_failure(
        "bwrap: setting up uid map: Permission denied"
    )
    assert "make kernel-env" in box.explain_failure(
        "bwrap: execvp /x/bin/python: Permission denied"
    )
    assert "searchable" in box.explain_failure("bwrap: Can't find source path /x: No such file")


def test_check_available_refuses_a_server_that_cannot_switch_uid(sandbox: Sandbox) -> None:
    """A server that is neither root nor the kernel uid cannot drop to it: said so."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes an unprivileged "server", reports, and exits at once
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(64111, 64111, 64111)
            os.setresuid(64111, 64111, 64111)
            try:
                sandbox.check_available()
                os.write(write, b"available")
            except SandboxUnavailable as e:
                os.write(write, str(e).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        reason = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reason.startswith(f"cannot switch to uid {UID}: the server runs as uid 64111, not root")


def test_folders_the_kernel_uid_cannot_reach_are_refused(kernel_env: Path, base_dir: Path) -> None:
    box = Sandbox(kernel_env)
    closed = base_dir / f"closed-{secrets.token_hex(4)}"
    closed.mkdir(mode=0o700)
    with pytest.raises(SandboxError, match="cannot enter"):
        box.prepare_dirs(closed / "work", closed / "conn")
    with pytest.raises(SandboxError, match="would cover"):
        box.command(["true"], base_dir, Path("/usr"))
    with pytest.raises(SandboxError, match="inside the sandbox's /workspace"):
        box.command(["true"], base_dir, Path("/workspace/conn"))
    with pytest.raises(ValueError, match="CLARITYHIRE_ADMIN_KEY"):
        Sandbox(kernel_env, extra_env=(("CLARITYHIRE_ADMIN_KEY", "x"),))
    with pytest.raises(ValueError, match="non-root"):
        Sandbox(kernel_env, kernel_uid=0)


def test_synthetic_etc_names_the_user_and_resolves_localhost(
    sandbox: Sandbox, base_dir: Path
) -> None:
    box = replace(sandbox, etc_dir=base_dir / f"etc-{secrets.token_hex(4)}")
    box.write_etc()
    room = Room(base_dir, box)
    seen = run_json(
        box,
        room,
        """
        import getpass, json, pwd, socket, subprocess
        print(json.dumps({
            "getuser": getpass.getuser(),
            "pwd": pwd.getpwuid(65534).pw_name,
            "whoami": subprocess.run(["whoami"], capture_output=True, text=True).stdout.strip(),
            "localhost": socket.getaddrinfo("localhost", 80, socket.AF_INET)[0][4][0],
            "users": [p.pw_name for p in pwd.getpwall()],
        }))
        """,
    )
    assert seen == {
        "getuser": "candidate",
        "pwd": "candidate",
        "whoami": "candidate",
        "localhost": "127.0.0.1",
        "users": ["candidate"],
    }
