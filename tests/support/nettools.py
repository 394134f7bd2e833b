"""Tiny traffic tools run inside network namespaces (`ip netns exec NS python nettools.py ...`).

serve  NAME PROTO:ADDR:PORT...   echo servers; each reply is "NAME <peer address> <message>"
tcp    HOST PORT MESSAGE         one request; prints JSON {"reply": ...} or {"error": "ECONNREFUSED"...}
udp    HOST PORT MESSAGE         same over UDP (connected socket, so ICMP errors are reported)
pipe   HOST PORT                 one long-lived TCP connection: each stdin line is sent, reply printed
connrate HOST PORT SECONDS       connections/s of connect+request+reply+close, prints JSON
http   URL                       GET, prints JSON {"status": ..., "body": ...}
first  HOST PORT MESSAGE TIMEOUT new TCP connections every 20 ms until one gets a reply; prints READY at
                                 once, then JSON {"t": CLOCK_MONOTONIC of that reply, "reply": ...}
arpwatch IFACE SRC_IP TARGET_IP  ARP requests for TARGET_IP every 20 ms; prints READY, then a JSON line
                                 per ARP frame about TARGET_IP (reply or gratuitous) until SIGTERM:
                                 {"t": monotonic, "op": 1|2, "mac": sender, "probe": requests sent}
"""
from __future__ import annotations

import errno
import json
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _split(spec: str) -> tuple[str, str, int]:
    proto, rest = spec.split(":", 1)
    host, port = rest.rsplit(":", 1)
    return proto, host.strip("[]"), int(port)


def serve(name: str, specs: list[str]) -> None:
    socks = []
    for spec in specs:
        proto, host, port = _split(spec)
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(_family(host), kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        if proto == "tcp":
            s.listen(128)
            threading.Thread(target=_tcp_accept, args=(name, s), daemon=True).start()
        else:
            threading.Thread(target=_udp_loop, args=(name, s), daemon=True).start()
        socks.append(s)
    print("READY", flush=True)
    threading.Event().wait()


def _tcp_accept(name: str, s: socket.socket) -> None:
    while True:
        conn, peer = s.accept()
        threading.Thread(target=_tcp_conn, args=(name, conn, peer[0]), daemon=True).start()


def _tcp_conn(name: str, conn: socket.socket, peer: str) -> None:
    with conn, conn.makefile("rwb") as f:
        for line in f:
            f.write(f"{name} {peer} {line.decode().strip()}\n".encode())
            f.flush()


def _udp_loop(name: str, s: socket.socket) -> None:
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(f"{name} {peer[0]} {data.decode().strip()}".encode(), peer)


def _err(exc: OSError) -> dict:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return {"error": "timeout"}
    return {"error": errno.errorcode.get(exc.errno or 0, str(exc))}


def tcp(host: str, port: int, message: str, timeout: float = 3.0) -> dict:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s, s.makefile("rwb") as f:
            f.write(f"{message}\n".encode())
            f.flush()
            return {"reply": f.readline().decode().strip()}
    except OSError as exc:
        return _err(exc)


def udp(host: str, port: int, message: str, timeout: float = 2.0) -> dict:
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.send(message.encode())
            return {"reply": s.recv(65535).decode().strip()}
        except OSError as exc:
            return _err(exc)


def pipe(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=5) as s, s.makefile("rwb") as f:
        print("CONNECTED", flush=True)
        for line in sys.stdin:
            try:
                f.write(line.encode())
                f.flush()
                reply = f.readline().decode().strip()
                print(json.dumps({"reply": reply} if reply else {"error": "closed"}), flush=True)
            except OSError as exc:
                print(json.dumps(_err(exc)), flush=True)


def connrate(host: str, port: int, seconds: float) -> dict:
    n = errors = 0
    end = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(b"x\n")
                if not s.recv(256):
                    errors += 1
                    continue
            n += 1
        except OSError:
            errors += 1
    return {"connections": n, "errors": errors, "seconds": time.monotonic() - start}


def http(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return {"status": resp.status, "body": resp.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode()}
    except OSError as exc:
        return {"status": 0, "body": str(exc)}


def first(host: str, port: int, message: str, timeout: float) -> dict:
    print("READY", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = tcp(host, port, message, timeout=0.2)  # a SYN lost mid-takeover: try again soon
        if "reply" in result:
            return {"t": time.monotonic(), **result}
        time.sleep(0.02)
    return {"error": "timeout"}


def arpwatch(iface: str, src_ip: str, target_ip: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.bind((iface, 0))
    mac = sock.getsockname()[4][:6]
    target = socket.inet_aton(target_ip)
    request = (b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
               + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(src_ip), b"\0" * 6, target))
    probes = [0]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def send() -> None:
        while True:
            sock.send(request)
            probes[0] += 1
            time.sleep(0.02)

    threading.Thread(target=send, daemon=True).start()
    print("READY", flush=True)
    while True:
        frame = sock.recv(128)
        op, sha, spa, _, tpa = struct.unpack("!6xH6s4s6s4s", frame[14:42])
        if sha != mac and spa == target and (op == 2 or tpa == target):
            print(json.dumps({"t": time.monotonic(), "op": op, "mac": sha.hex(), "probe": probes[0]}), flush=True)


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "serve":
        serve(args[0], args[1:])
    elif cmd == "pipe":
        pipe(args[0], int(args[1]))
    elif cmd == "arpwatch":
        arpwatch(*args)
    else:
        result = {"tcp": lambda: tcp(args[0], int(args[1]), args[2]),
                  "udp": lambda: udp(args[0], int(args[1]), args[2]),
                  "connrate": lambda: connrate(args[0], int(args[1]), float(args[2])),
                  "http": lambda: http(args[0]),
                  "first": lambda: first(args[0], int(args[1]), args[2], float(args[3]))}[cmd]()
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
