"""A TCP port of this process's network namespace made reachable inside another one (e.g. the local
API server's 127.0.0.1:6443 inside a router namespace, so an unmodified kubeconfig works there).

The listening socket is created by a thread that entered the target namespace (setns(2) changes only
the calling thread's namespace) and then went back; connections to the target are made from here.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def _listen_in(ns: str, host: str, port: int) -> socket.socket:
    out: list[socket.socket | BaseException] = []

    def work() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(64)
                out.append(s)
            finally:
                _setns(home)
        except BaseException as exc:
            out.append(exc)
        finally:
            os.close(home)
            os.close(target)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, target: tuple[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            conn.close()
            continue
        upstream.settimeout(None)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


@contextlib.contextmanager
def forward(ns: str, host: str, port: int) -> Iterator[None]:
    """Inside `ns`, host:port leads to host:port of this namespace, until the block ends."""
    listener = _listen_in(ns, host, port)
    stop = threading.Event()
    threading.Thread(target=_serve, args=(listener, (host, port), stop), daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        listener.close()
