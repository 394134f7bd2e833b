"""Endpoint changes without a reload: server slots and HAProxy's runtime API.

Every backend is rendered with a fixed number of server lines, its *slots* (a power of two, at
least ``Settings.server_slots``); a slot holds one endpoint (address, port, weight) or is empty
(``disabled``: maintenance). When only endpoints change, the slots are refilled through the admin
socket (``set server <backend>/<slot> addr|weight|state|health``) and the configuration text stays
what it was. A backend that needs more servers than it has slots grows to the next power of two,
which changes the configuration: that costs one reload. Every reload renders the current slots, so
the runtime state survives it.

Pure core: ``assign`` (where each desired server goes) and ``commands`` (runtime commands from the
current slots to the desired ones). ``RuntimeAPI`` is the thin edge that sends them.
"""
from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterable, Sequence

# Answers of successful commands (``set server ... addr`` says what changed; the others say nothing).
_OK_PREFIXES = ("IP changed from", "no need to change the addr", "port changed from")


@dataclasses.dataclass(frozen=True, order=True)
class Server:
    """One endpoint in a backend: where it is and its weight (0..256)."""

    address: str
    port: int
    weight: int

    @property
    def key(self) -> tuple[str, int]:
        return self.address, self.port


Slots = tuple[Server | None, ...]


def slot_count(servers: int, minimum: int) -> int:
    """Slots for ``servers`` servers: a power of two, at least ``minimum`` (growth is rare)."""
    n = 1
    while n < max(servers, minimum, 1):
        n *= 2
    return n


def assign(current: Slots | None, desired: Sequence[Server], minimum: int) -> Slots:
    """The slots holding ``desired``: a server already in a slot stays there (a sticky cookie names
    its slot), new servers take the lowest free slots; when they do not fit the slots grow to the
    next power of two (the caller reloads then, since the configuration text changed)."""
    current = current or ()
    size = len(current) if len(desired) <= len(current) else slot_count(len(desired), minimum)
    wanted = {s.key: s for s in desired}
    slots: list[Server | None] = [None] * size
    for i, s in enumerate(current):
        if s is not None and s.key in wanted:
            slots[i] = wanted.pop(s.key)
    free = (i for i, s in enumerate(slots) if s is None)
    for s in desired:
        if s.key in wanted:
            slots[next(free)] = wanted.pop(s.key)
    return tuple(slots)


def slot_name(index: int) -> str:
    return f"s{index + 1}"


def commands(backend: str, current: Slots, desired: Slots) -> list[str] | None:
    """Runtime commands turning ``current`` into ``desired``; None when the slot counts differ
    (only a reload changes them)."""
    if len(current) != len(desired):
        return None
    out: list[str] = []
    for i, (old, new) in enumerate(zip(current, desired, strict=True)):
        target = f"{backend}/{slot_name(i)}"
        if new is None:
            if old is not None:
                out.append(f"set server {target} state maint")
            continue
        if old is None or old.key != new.key:
            out.append(f"set server {target} addr {new.address} port {new.port}")
        if old is None or old.weight != new.weight:
            out.append(f"set server {target} weight {new.weight}")
        if old is None:
            # A new endpoint is ready (Kubernetes said so): up at once, checks continue from there.
            out += [f"set server {target} state ready", f"set server {target} health up"]
    return out


def errors(answer: str) -> list[str]:
    """The lines of a runtime API answer that report a failure."""
    return [line for line in answer.splitlines() if line.strip() and not line.startswith(_OK_PREFIXES)]


class RuntimeAPIError(RuntimeError):
    pass


class RuntimeAPI:
    """HAProxy's admin socket (``stats socket ... level admin``) of the current worker."""

    def __init__(self, path: str, batch: int = 200, timeout: float = 5.0) -> None:
        self.path = path
        self.batch = batch
        self.timeout = timeout

    def send(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            s.connect(self.path)
            s.sendall(line.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def apply(self, cmds: Iterable[str]) -> None:
        """Every command, ``batch`` per connection (``;``-separated); RuntimeAPIError on failures."""
        todo = list(cmds)
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            try:
                answer = self.send("; ".join(chunk))
            except OSError as exc:
                raise RuntimeAPIError(f"admin socket {self.path}: {exc}") from exc
            if bad := errors(answer):
                raise RuntimeAPIError(f"HAProxy refused runtime commands ({'; '.join(bad)}) in: {'; '.join(chunk)}")
