"""Destination servers of the e2e "external" network: they report the source address they saw.

Standalone (standard library only): the e2e tier runs it as `python3 -c <this file> SPEC...` inside
the external network namespace, on the machine itself or on a kind node (there in a container of the
netshift image), so it must not import anything of the project.

Each SPEC is `LABEL:PROTO:IP:PORT` (PROTO tcp or udp). For every TCP connection and every UDP
datagram the server answers one line and, for TCP, closes:

    <LABEL> proto=<tcp|udp> dst=<IP>:<PORT> src=<client ip>:<client port>

A line `ready` on stdout says every socket is bound.
"""
from __future__ import annotations

import selectors
import socket
import sys


def main(specs: list[str]) -> None:
    sel = selectors.DefaultSelector()
    for spec in specs:
        label, proto, ip, port = spec.rsplit(":", 3) if spec.count(":") == 3 else _split6(spec)
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, int(port)))
        if proto == "tcp":
            sock.listen(64)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, (label, proto, ip, int(port)))
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            label, proto, ip, port = key.data
            sock = key.fileobj
            try:
                if proto == "tcp":
                    conn, peer = sock.accept()
                    with conn:
                        conn.settimeout(2)
                        conn.sendall(_line(label, proto, ip, port, peer))
                else:
                    _data, peer = sock.recvfrom(2048)
                    sock.sendto(_line(label, proto, ip, port, peer), peer)
            except OSError as exc:  # a client that went away must not stop the server
                print(f"error {label}: {exc}", file=sys.stderr, flush=True)


def _split6(spec: str) -> tuple[str, str, str, str]:
    """LABEL:PROTO:[v6]:PORT."""
    label, proto, rest = spec.split(":", 2)
    ip, port = rest.rsplit(":", 1)
    return label, proto, ip.strip("[]"), port


def _line(label: str, proto: str, ip: str, port: int, peer: tuple) -> bytes:
    return f"{label} proto={proto} dst={ip}:{port} src={peer[0]}:{peer[1]}\n".encode()


if __name__ == "__main__":
    main(sys.argv[1:])
