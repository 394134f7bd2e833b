"""HAProxy in master-worker mode: check, start, reload without dropping connections, stop.

The master (``haproxy -W -S <master socket> -f <config>``) stays in the foreground as our child.
A reload makes the master re-execute itself with the same arguments: it starts new workers from
the (new) configuration at the same path, which take over the listening sockets of the old workers
through the admin socket (``stats socket ... expose-fd listeners``, used automatically as ``-x`` by
the master), then the old workers stop accepting and finish their connections (soft stop).
A first configuration is checked with ``haproxy -c`` before HAProxy starts. A reload needs no
separate check (it would parse everything a second time, on a new route's path to its first
request): the re-executed master parses the new configuration itself and, when it cannot load it,
keeps the old worker serving and counts the failure (``show proc``: ``[failed: 1]``), which
``reload`` reports as ``ReloadRefused``.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger("netshift.router.haproxy")


class HAProxyError(RuntimeError):
    pass


class ReloadRefused(HAProxyError):
    """The master could not load the new configuration; the previous worker keeps serving."""


def find_binary(name: str) -> str | None:
    """``name`` as a path, or found on PATH or in the sbin directories (Debian's haproxy)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def fit_maxconn(maxconn: int) -> int:
    """``maxconn`` HAProxy can have with this process's file descriptor limit (raised to the hard
    limit when needed): HAProxy needs about two descriptors per connection and refuses to start when
    an explicit maxconn does not fit."""
    need = 2 * maxconn + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        return max(1, (soft - 1024) // 2)
    return maxconn


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (even by SIGKILL),
    so a master never outlives its router. Kept across the master's re-exec on reload."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclasses.dataclass(frozen=True)
class Proc:
    pid: int
    kind: str  # master | worker
    reloads: int
    old: bool = False
    failed: int = 0  # the master's failed reloads since its last successful one


def check(binary: str, config_path: str, timeout: float = 60) -> tuple[bool, str]:
    """``haproxy -c``: (valid, messages)."""
    proc = subprocess.run([binary, "-c", "-f", config_path], capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def version(binary: str) -> str:
    proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    m = re.search(r"version (\S+)", proc.stdout)
    return m.group(1) if m else "unknown"


def _cli(path: str, command: str, timeout: float = 5.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)  # the master CLI answers and closes once the input ends
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def parse_show_proc(text: str) -> list[Proc]:
    """The processes of the master CLI's ``show proc`` (current and old workers)."""
    out: list[Proc] = []
    old = False
    for line in text.splitlines():
        if line.startswith("# old workers"):
            old = True
            continue
        if line.startswith("#") or not line.strip():
            if line.startswith("# workers"):
                old = False
            continue
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1] in ("master", "worker"):
            try:
                reloads = int(parts[2])
            except ValueError:
                reloads = 0
            failed = re.search(r"\[failed: (\d+)\]", line)
            out.append(Proc(int(parts[0]), parts[1], reloads, old, int(failed.group(1)) if failed else 0))
    return out


class HAProxy:
    """One HAProxy master process and its workers."""

    def __init__(self, binary: str, config_path: str, master_socket: str, *,
                 stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None) -> None:
        self.binary = binary
        self.config_path = config_path
        self.master_socket = master_socket
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout, self._stderr = stdout, stderr
        self.reloads = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        if os.path.exists(self.master_socket):
            os.unlink(self.master_socket)
        self.proc = subprocess.Popen(
            [self.binary, "-W", "-S", f"{self.master_socket},mode,600", "-f", self.config_path],
            stdout=self._stdout, stderr=self._stderr, start_new_session=True, preexec_fn=_die_with_parent)  # noqa: PLW1509 -- prctl only, no locks taken; the router starts HAProxy before its threads
        self._wait(lambda procs: any(p.kind == "worker" and not p.old for p in procs), timeout,
                   "HAProxy did not start a worker")

    def processes(self) -> list[Proc]:
        return parse_show_proc(_cli(self.master_socket, "show proc"))

    def workers(self) -> list[Proc]:
        return [p for p in self.processes() if p.kind == "worker" and not p.old]

    def _wait(self, predicate: Callable[[list[Proc]], bool], timeout: float, message: str) -> list[Proc]:
        deadline = time.monotonic() + timeout
        last: list[Proc] = []
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise HAProxyError(f"{message}: the master exited with {self.proc.returncode}")
            try:
                last = self.processes()
                if predicate(last):
                    return last
            except OSError:
                pass
            time.sleep(0.01)  # a reload is on the path of a new route's first request
        raise HAProxyError(f"{message} within {timeout:.0f}s (processes: {last})")

    def reload(self, timeout: float = 30) -> None:
        """Reload the configuration at ``config_path``; returns when the new worker runs, raises
        ``ReloadRefused`` when the master could not load it (the old worker still serves)."""
        if not self.running:
            raise HAProxyError("HAProxy is not running")
        procs = self.processes()
        before = {p.pid for p in procs if p.kind == "worker" and not p.old}
        master_reloads = next((p.reloads for p in procs if p.kind == "master"), 0)
        try:
            _cli(self.master_socket, "reload")
        except OSError:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGUSR2)

        def new_worker_or_failure(procs: list[Proc]) -> bool:
            return any((p.kind == "worker" and not p.old and p.pid not in before)
                       or (p.kind == "master" and p.reloads > master_reloads and p.failed) for p in procs)
        procs = self._wait(new_worker_or_failure, timeout, "HAProxy reload did not start a new worker")
        if not any(p.kind == "worker" and not p.old and p.pid not in before for p in procs):
            raise ReloadRefused("HAProxy could not load the new configuration; the previous one still serves")
        self.reloads += 1

    def stop(self, grace: float = 10) -> int | None:
        """Soft stop (finish connections) for up to ``grace`` seconds, then hard stop."""
        if self.proc is None:
            return None
        for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:  # the session: workers too
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode
