"""The e2e client: one request to HOST:PORT over TCP or UDP, retried until an answer or a deadline.

Standalone (standard library only): the tier runs it in the client pod as
`kubectl exec client -- python3 -c <this file> PROTO HOST PORT [SECONDS]`. It prints the first answer
line (the identify server's report) and exits 0, or prints the last error and exits 1. Retries cover
the moments where kube-proxy or the agent has not yet programmed a new port.
"""
from __future__ import annotations

import socket
import sys
import time


def once(proto: str, host: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if proto == "tcp":
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(3)
            sock.sendall(b"hello\n")
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    else:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.5)
            sock.sendto(b"hello\n", (host, port))
            data, _ = sock.recvfrom(4096)
    line = data.decode(errors="replace").strip()
    if not line:
        raise OSError("connection closed without an answer")
    return line


def main() -> int:
    proto, host, port = sys.argv[1].lower(), sys.argv[2], int(sys.argv[3])
    deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 30)
    last = "no attempt"
    while True:
        try:
            print(once(proto, host, port), flush=True)
            return 0
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            print(f"FAILED {proto} {host}:{port}: {last}", flush=True)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
