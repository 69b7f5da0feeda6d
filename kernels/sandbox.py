"""The sandbox that candidate code runs in: bubblewrap namespaces, an unprivileged uid, rlimits.

A kernel command (``[<kernel env>/bin/python, -m, ipykernel_launcher, -f, <connection file>]``)
is wrapped so that it runs:

- as ``kernel_uid``/``kernel_gid`` (seen inside as ``sandbox_uid``/``sandbox_gid`` if those are
  set) with no supplementary groups: the privilege drop happens in the ``preexec_fn`` *before*
  bubblewrap is executed, so bubblewrap itself is unprivileged and builds its own user
  namespace (no capabilities inside, ``no_new_privs`` set, no nested user namespaces);
- under rlimits (``SandboxLimits``) set in that same ``preexec_fn``; ``RLIMIT_NPROC`` only holds
  because the uid is not root;
- in fresh network, pid, ipc, uts and cgroup namespaces: the network namespace has nothing but
  its own loopback, so neither the host's 127.0.0.1 nor any other address is reachable, and the
  host's processes are invisible;
- in a filesystem made of read-only binds of ``/usr`` (the merged-usr links ``/bin``, ``/lib``,
  ``/lib64``, ``/sbin`` are recreated as links), the kernel environment, a handful of harmless
  ``/etc`` files and the optional synthetic ``/etc`` of ``etc_dir``; size-capped private tmpfs
  on ``/tmp``, ``/dev/shm`` and the room's working folder ``workdir_mount`` (the cwd and
  ``HOME``: its files use capped memory, never the host's disk); the connection folder
  read-write at its own absolute path (the kernel's ``ipc`` sockets live there). Everything
  else, the root and ``/dev`` included, is read-only or absent;
- with an environment built from nothing: ``/usr/bin/env -i`` runs bubblewrap with only the
  variables of ``SandboxCommand.env``. bubblewrap's ``--clearenv`` would not be enough: the
  sandbox's pid 1 is a fork of bubblewrap, and its ``/proc/1/environ`` shows the environment
  bubblewrap was *executed* with, whatever was unset later;
- and dies with its parent (``--die-with-parent``) in a session of its own (``--new-session``).

Use from a jupyter_client provisioner: ``SandboxCommand.argv`` replaces the kernel command and
``SandboxCommand.popen_kwargs()`` goes to ``Popen`` (``launch_kernel`` passes extra keywords
through). The kernel must use the ``ipc`` transport with its connection file inside the
connection folder, and that file must be handed to the kernel's uid (``Sandbox.hand_over``).
"""

from __future__ import annotations

import os
import resource
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


class SandboxError(RuntimeError):
    """A sandbox cannot be set up as asked (bad paths, unreachable folders)."""


class SandboxUnavailable(SandboxError):
    """A layer of the sandbox is missing on this machine; the message says which and why."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox, applied as both soft and hard rlimits.

    ``max_processes`` counts every process *and thread* of the kernel's real uid on the whole
    machine (Linux enforces it across user namespaces), so sandboxes that share a uid share it:
    an idle ipykernel with its two bubblewrap processes takes ~14.
    ``workspace_bytes`` caps the room's working folder, a private tmpfs like them.
    ``tmp_bytes`` caps each of the private tmpfs ``/tmp`` and ``/dev/shm``: their pages are
    memory that ``RLIMIT_AS`` does not see.
    """

    memory_bytes: int = 1024 * MIB
    cpu_seconds: int = 600
    max_processes: int = 64
    max_file_bytes: int = 64 * MIB
    max_open_files: int = 256
    tmp_bytes: int = 64 * MIB
    workspace_bytes: int = 128 * MIB

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "cpu_seconds",
            "max_processes",
            "max_file_bytes",
            "max_open_files",
            "tmp_bytes",
            "workspace_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SandboxLimits.{name} must be a positive int, not {value!r}")

    def rlimits(self) -> tuple[tuple[int, int], ...]:
        """The ``(resource, value)`` pairs that ``apply`` sets (core dumps are always off)."""
        return (
            (resource.RLIMIT_AS, self.memory_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_NPROC, self.max_processes),
            (resource.RLIMIT_FSIZE, self.max_file_bytes),
            (resource.RLIMIT_NOFILE, self.max_open_files),
            (resource.RLIMIT_CORE, 0),
        )

    def apply(self) -> None:
        """Set every limit on the calling process (soft = hard)."""
        for which, value in self.rlimits():
            resource.setrlimit(which, (value, value))


@dataclass(frozen=True)
class DropPrivileges:
    """The ``preexec_fn`` of a sandbox: set the rlimits, then become ``uid``/``gid``.

    Runs in the forked child, just before bubblewrap is executed. As root it clears the
    supplementary groups first, then sets the gid, then the uid (real, effective and saved),
    which also drops every capability. A server that already runs as ``uid``/``gid`` skips
    the switch; any other non-root server cannot sandbox and fails here.
    """

    uid: int
    gid: int
    limits: SandboxLimits

    def __call__(self) -> None:
        """Apply the limits and switch users (raises ``PermissionError`` if it cannot)."""
        self.limits.apply()
        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        if os.getresuid() != (self.uid,) * 3 or os.getresgid() != (self.gid,) * 3:
            raise PermissionError(f"cannot switch to uid {self.uid} / gid {self.gid}")


@dataclass(frozen=True)
class SandboxCommand:
    """Everything ``Popen`` needs to start one sandboxed command."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(hash=False)
    cwd: str
    preexec_fn: DropPrivileges

    def popen_kwargs(self) -> dict[str, Any]:
        """``env``, ``cwd`` and ``preexec_fn`` for ``subprocess.Popen`` / ``launch_kernel``."""
        return {"env": dict(self.env), "cwd": self.cwd, "preexec_fn": self.preexec_fn}


@dataclass(frozen=True)
class Sandbox:
    """How candidate code is confined; ``command`` wraps one kernel command.

    ``kernel_env`` is the world-readable Python environment kernels run from (``make
    kernel-env``); it is exposed read-only at its own path. ``extra_ro_paths`` are further
    host paths exposed read-only at their own paths (e.g. a bash kernel's extra tools).
    ``etc_dir`` is an optional folder written by ``write_etc`` whose synthetic ``passwd``,
    ``group``, ``hosts`` and ``nsswitch.conf`` make ``whoami`` and ``localhost`` work.

    ``kernel_uid``/``kernel_gid`` are the host ids the code runs as; ``sandbox_uid``/
    ``sandbox_gid`` (default: the same) are the ids it sees inside. ``max_processes`` counts
    threads too and is shared by every process of ``kernel_uid`` on the machine (an idle
    ipykernel is ~14 of them), so give each kernel a uid of its own, e.g.
    ``dataclasses.replace(sandbox, kernel_uid=base + slot, kernel_gid=base + slot)`` with a
    fixed ``sandbox_uid``/``sandbox_gid`` so that one ``etc_dir`` serves them all.
    """

    kernel_env: Path
    kernel_uid: int = 65534
    kernel_gid: int = 65534
    limits: SandboxLimits = SandboxLimits()
    bwrap: str = "/usr/bin/bwrap"
    env_program: str = "/usr/bin/env"
    workdir_mount: str = "/workspace"
    hostname: str = "sandbox"
    user_name: str = "candidate"
    etc_dir: Path | None = None
    extra_ro_paths: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    sandbox_uid: int | None = None
    sandbox_gid: int | None = None
    # Host /etc entries that programs need and that say nothing about the server: the dynamic
    # linker's cache and config, Debian's alternatives links, the time zone. Missing ones are
    # skipped.
    host_etc_files: tuple[str, ...] = (
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/alternatives",
        "/etc/localtime",
    )
    # Top-level links of a merged-usr system, recreated inside (or bound if real folders).
    usr_links: tuple[str, ...] = ("/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin")

    def __post_init__(self) -> None:
        # The real path: bubblewrap binds it as the kernels' uid, which may not be able to
        # follow a link that lies in a private folder (a checkout under /root, say).
        object.__setattr__(self, "kernel_env", Path(self.kernel_env).resolve())
        for name in ("kernel_uid", "kernel_gid", "sandbox_uid", "sandbox_gid"):
            value = getattr(self, name)
            if value is None and name.startswith("sandbox_"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Sandbox.{name} must be a non-root id, not {value!r}")
        if not self.workdir_mount.startswith("/") or self.workdir_mount == "/":
            raise ValueError(f"workdir_mount must be an absolute folder: {self.workdir_mount!r}")
        for key, _ in self.extra_env:
            if key.upper().startswith("CLARITYHIRE_") or "=" in key or not key:
                raise ValueError(f"extra_env may not set {key!r}")
        for path in (str(self.kernel_env), *self.extra_ro_paths):
            self._check_mount_point(path, "a read-only path")

    # -- paths -------------------------------------------------------------------------------

    @property
    def inner_ids(self) -> tuple[int, int]:
        """The uid and gid the sandboxed code sees."""
        uid = self.kernel_uid if self.sandbox_uid is None else self.sandbox_uid
        gid = self.kernel_gid if self.sandbox_gid is None else self.sandbox_gid
        return uid, gid

    @property
    def python(self) -> Path:
        """The kernel environment's interpreter (as seen both outside and inside)."""
        return self.kernel_env / "bin" / "python"

    def kernel_argv(self, connection_file: Path) -> list[str]:
        """The ipykernel command for ``connection_file`` (before ``command`` wraps it)."""
        return [str(self.python), "-m", "ipykernel_launcher", "-f", str(connection_file)]

    def _check_mount_point(self, path: str, what: str) -> None:
        """Refuse a host path whose mount would hide, or hide under, the sandbox's own."""
        if not path.startswith("/"):
            raise SandboxError(f"{what} must be absolute: {path!r}")
        reserved = ("/", "/proc", "/dev", "/etc", "/usr", self.workdir_mount, *self.usr_links)
        norm = os.path.normpath(path)
        for mount in reserved:
            if norm == mount or (mount != "/" and _is_under(mount, norm)):
                raise SandboxError(f"{what} {path!r} would cover the sandbox's {mount}")
        for mount in (self.workdir_mount, "/proc", "/dev"):
            if _is_under(norm, mount):
                raise SandboxError(f"{what} {path!r} lies inside the sandbox's {mount}")

    # -- folders -----------------------------------------------------------------------------

    def prepare_dirs(self, workdir: Path, connection_dir: Path) -> None:
        """Create both folders (and missing parents), owned by the kernel uid, mode 0700.

        Raises ``SandboxError`` if an existing parent folder would stop the kernel uid from
        reaching them: bubblewrap runs as that uid and must open the source of each bind.
        """
        self._check_mount_point(str(connection_dir), "the connection folder")
        for folder in (workdir, connection_dir):
            if not folder.is_absolute():
                raise SandboxError(f"sandbox folders must be absolute: {folder}")
            if folder.is_symlink():
                raise SandboxError(f"sandbox folder is a symbolic link: {folder}")
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, self.kernel_uid, self.kernel_gid, follow_symlinks=False)
            os.chmod(folder, 0o700, follow_symlinks=False)
            self._check_reachable(folder.parent)

    def hand_over(self, *paths: Path) -> None:
        """Give single files or folders (not their contents) to the kernel uid.

        For the connection file (jupyter_client writes it 0600 as the server's user, and the
        kernel must read it) and for room files the server writes before a start. Symbolic
        links are not followed.
        """
        for path in paths:
            os.chown(path, self.kernel_uid, self.kernel_gid, follow_symlinks=False)

    def _check_reachable(self, folder: Path) -> None:
        """Raise unless the kernel uid may search every folder from ``/`` down to ``folder``."""
        for part in (folder, *folder.parents):
            st = part.stat()
            if st.st_uid == self.kernel_uid:
                bit = stat.S_IXUSR
            elif st.st_gid == self.kernel_gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                raise SandboxError(
                    f"uid {self.kernel_uid} cannot enter {part} (mode {stat.filemode(st.st_mode)},"
                    f" owner {st.st_uid}:{st.st_gid}); keep sandbox folders under a folder it may"
                    " search, e.g. mode 0711"
                )

    def write_etc(self) -> None:
        """Write ``etc_dir``: a synthetic passwd, group, hosts and nsswitch.conf (idempotent)."""
        if self.etc_dir is None:
            raise SandboxError("Sandbox.etc_dir is not set")
        (uid, gid), name, home = self.inner_ids, self.user_name, self.workdir_mount
        files = {
            "passwd": f"{name}:x:{uid}:{gid}:{name}:{home}:/bin/sh\n",
            "group": f"{name}:x:{gid}:\n",
            "hosts": f"127.0.0.1\tlocalhost {self.hostname}\n::1\tlocalhost\n",
            "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        }
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.etc_dir, 0o755)
        for file_name, text in files.items():
            path = self.etc_dir / file_name
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            tmp.replace(path)

    # -- the command -------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The sandbox's whole environment: no server variable gets in."""
        env = {
            "PATH": f"{self.kernel_env}/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.workdir_mount,
            "LANG": "C.UTF-8",
            "IPYTHONDIR": "/tmp/.ipython",  # not in HOME: that is the room's own folder
            "TMPDIR": "/tmp",
            # glibc reserves 64 MiB of address space per malloc arena, up to one per thread:
            # an idle ipykernel (12 threads) then maps ~750 MiB and would not even start under
            # a 512 MiB RLIMIT_AS. Two arenas bring it to ~210 MiB, so the cap is the code's.
            "MALLOC_ARENA_MAX": "2",
        }
        if self.etc_dir is not None:
            env["USER"] = env["LOGNAME"] = self.user_name
        env.update(self.extra_env)
        return env

    def bwrap_args(self, workdir: Path, connection_dir: Path) -> list[str]:
        """bubblewrap's options, up to but without the ``--`` and the command."""
        self._check_mount_point(str(connection_dir), "the connection folder")
        if not workdir.is_absolute():
            raise SandboxError(f"the working folder must be absolute: {workdir}")
        tmp_size = str(self.limits.tmp_bytes)
        args = [
            "--unshare-all",  # net, pid, ipc, uts, cgroup (and user, made explicit below)
            "--unshare-user",
            "--disable-userns",  # no nested user namespaces inside
        ]
        if self.inner_ids != (self.kernel_uid, self.kernel_gid):
            args += ["--uid", str(self.inner_ids[0]), "--gid", str(self.inner_ids[1])]
        args += [
            "--die-with-parent",
            "--new-session",
            "--hostname",
            self.hostname,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            tmp_size,
            "--tmpfs",
            "/dev/shm",
            "--size",
            tmp_size,
            "--tmpfs",
            "/tmp",  # before any bind under /tmp
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for link in self.usr_links:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += ["--ro-bind", link, link]
        for etc_file in self.host_etc_files:
            args += ["--ro-bind-try", etc_file, etc_file]
        if self.etc_dir is not None:
            for name in ("passwd", "group", "hosts", "nsswitch.conf"):
                args += ["--ro-bind", str(self.etc_dir / name), f"/etc/{name}"]
        for path in sorted({str(self.kernel_env), *self.extra_ro_paths}):
            args += ["--ro-bind", path, path]
        args += [
            # The room's folder is a size-capped tmpfs of its own, not the host's disk: a
            # program writing files in a loop fills its own quota, never the server's disk.
            "--size",
            str(self.limits.workspace_bytes),
            "--tmpfs",
            self.workdir_mount,
            "--bind",
            str(connection_dir),
            str(connection_dir),
            "--remount-ro",
            "/dev",  # not recursive: /dev/shm, /dev/pts and the device nodes stay usable
            "--remount-ro",
            "/",
            "--chdir",
            self.workdir_mount,
            "--unsetenv",
            "JPY_PARENT_PID",  # else ipykernel watches pid 1's parent and exits
        ]
        return args

    def command(self, argv: Sequence[str], workdir: Path, connection_dir: Path) -> SandboxCommand:
        """Wrap ``argv`` to run sandboxed, with ``workdir`` as its cwd (``workdir_mount``)."""
        if not argv:
            raise ValueError("empty command")
        env = self.environment()
        full = [
            self.env_program,
            "-i",  # bubblewrap starts with this environment and nothing else
            *(f"{key}={value}" for key, value in env.items()),
            self.bwrap,
            *self.bwrap_args(workdir, connection_dir),
            "--",
            *argv,
        ]
        return SandboxCommand(
            argv=tuple(full),
            env=env,
            cwd=str(workdir),
            preexec_fn=DropPrivileges(self.kernel_uid, self.kernel_gid, self.limits),
        )

    # -- self-test ---------------------------------------------------------------------------

    def check_available(self, scratch: Path | None = None, timeout: float = 30.0) -> None:
        """Run a trivial sandboxed Python; raise ``SandboxUnavailable`` saying what is missing.

        Checks, in order: bubblewrap and ``env`` are there, the kernel environment exists,
        this process may switch to the kernel uid, and a real sandbox (user, net and pid
        namespaces, the kernel uid, the mounts) starts and runs the kernel's Python. The probe's
        folders are made under ``scratch`` (default: the system's temporary folder).
        """
        for program, hint in (
            (self.bwrap, "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"),
            (self.env_program, "coreutils' env is needed to start it with a clean environment"),
        ):
            if not os.access(program, os.X_OK):
                raise SandboxUnavailable(f"{program} not found or not executable: {hint}")
        if not self.python.exists():
            raise SandboxUnavailable(
                f"kernel environment missing: {self.python} (build it with `make kernel-env`)"
            )
        if self.etc_dir is not None and not (self.etc_dir / "passwd").exists():
            raise SandboxUnavailable(f"{self.etc_dir} is empty: call Sandbox.write_etc() first")
        euid = os.geteuid()
        if euid != 0 and (os.getuid(), os.getgid()) != (self.kernel_uid, self.kernel_gid):
            raise SandboxUnavailable(
                f"cannot switch to uid {self.kernel_uid}: the server runs as uid {euid}, not root"
                f" (run it as root, or as uid {self.kernel_uid} / gid {self.kernel_gid} itself)"
            )
        base = Path(tempfile.mkdtemp(prefix="clarityhire-sandbox-check-", dir=scratch))
        try:
            os.chmod(base, 0o711)
            workdir, conn = base / "work", base / "conn"
            self.prepare_dirs(workdir, conn)
            self._run_probe(workdir, conn, timeout)
        except SandboxError as exc:
            if isinstance(exc, SandboxUnavailable):
                raise
            raise SandboxUnavailable(str(exc)) from exc
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def _run_probe(self, workdir: Path, conn: Path, timeout: float) -> None:
        """Start the probe sandbox and compare what it reports with what it should be."""
        probe = (
            "import os, socket\n"
            "open('probe', 'w').write('ok')\n"
            "names = sorted(n for _, n in socket.if_nameindex())\n"
            "print(os.getuid(), os.getgid(), os.getcwd(), ','.join(names), os.getpid(),\n"
            "      open('probe').read())\n"
        )
        cmd = self.command([str(self.python), "-I", "-c", probe], workdir, conn)
        try:
            done = subprocess.run(
                cmd.argv,
                **cmd.popen_kwargs(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.SubprocessError as exc:  # preexec_fn failed, or a timeout
            raise SandboxUnavailable(
                f"cannot start a process as uid {self.kernel_uid} / gid {self.kernel_gid}"
                f" under the sandbox limits: {exc}"
            ) from exc
        except OSError as exc:
            raise SandboxUnavailable(f"cannot execute the sandbox: {exc}") from exc
        if done.returncode != 0:
            raise SandboxUnavailable(self.explain_failure(done.stderr))
        uid, gid = self.inner_ids
        expected = f"{uid} {gid} {self.workdir_mount} lo 2 ok"
        if done.stdout.strip() != expected:
            raise SandboxUnavailable(
                f"the sandbox probe saw {done.stdout.strip()!r}, expected {expected!r}"
                " (uid, gid, cwd, network interfaces, pid, a file written in its folder)"
            )

    def explain_failure(self, stderr: str) -> str:
        """Turn bubblewrap's (or the probe's) error output into a reason with a remedy."""
        text = stderr.strip()
        lower = text.lower()
        if any(
            marker in lower
            for marker in (
                "no permissions to creat",  # bwrap: "No permissions to creating new namespace"
                "new namespace",
                "uid map",
                "gid map",
            )
        ):
            return (
                f"user namespaces are not available to uid {self.kernel_uid}: {text}. Allow"
                " unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1,"
                " user.max_user_namespaces > 0; Ubuntu 23.10+:"
                " kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for"
                " bwrap; in a container, a seccomp profile that allows clone/unshare)"
            )
        if "execvp" in lower:
            return (
                f"the kernel environment cannot be executed as uid {self.kernel_uid}: {text}."
                f" It must be world-readable ({self.kernel_env}: `make kernel-env`), and its"
                " interpreter's own files too"
            )
        if "can't find source path" in lower or "permission denied" in lower:
            return (
                f"uid {self.kernel_uid} cannot reach a folder the sandbox exposes: {text}."
                " Every parent folder must be searchable by that uid"
            )
        if "resource temporarily unavailable" in lower or "can't fork" in lower:
            return (
                f"uid {self.kernel_uid} already runs {self.limits.max_processes} processes or"
                f" more (max_processes counts the uid machine-wide): {text}"
            )
        return f"the sandbox did not start: {text or 'no error output'}"


def _is_under(path: str, folder: str) -> bool:
    """Whether normalised absolute ``path`` lies strictly inside ``folder``."""
    folder = folder.rstrip("/")
    return path != folder and path.startswith(folder + "/")
