"""A TCP proxy in front of the API server that can make every open connection go silent.

``freeze()`` models a middlebox that lost its flow state (a NAT or conntrack table reset): each
connection open at that moment stays open but forwards nothing more; a client that sends on it is
reset (as its next packet would be), while an idle receiver, a watch stream, waits forever unless it
has a watchdog. New connections pass as before. TLS is not terminated: the API server's certificate
must name the proxy's address (127.0.0.1 for hack/cluster's).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import threading
import urllib.parse
from collections.abc import Iterator

import yaml


class _Conn:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client, self.upstream = client, upstream
        self.frozen = False

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            w.transport.abort()


class SilentProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.conns: set[_Conn] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="silent-proxy")
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    from_client: bool) -> None:
        try:
            while data := await reader.read(65536):
                if not conn.frozen:
                    writer.write(data)
                    await writer.drain()
                elif from_client:
                    conn.abort()
                    return
                # else: the server's bytes are lost on the way
        except (ConnectionError, OSError):
            pass
        if from_client or not conn.frozen:  # a server's close is lost too while frozen
            conn.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        conn = _Conn(writer, up_writer)
        self.conns.add(conn)
        try:
            await asyncio.gather(self._pump(conn, reader, up_writer, True), self._pump(conn, up_reader, writer, False))
        finally:
            self.conns.discard(conn)

    def start(self) -> int:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def freeze(self) -> int:
        """Silence every open connection; returns how many."""
        async def go() -> int:
            for conn in self.conns:
                conn.frozen = True
            return len(self.conns)
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def stop(self) -> None:
        """Close everything: from now on the API server is unreachable through the proxy."""
        if not self.loop.is_running():
            return

        async def go() -> None:
            if self.server is not None:
                self.server.close()
            for conn in list(self.conns):
                conn.abort()
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextlib.contextmanager
def silent_proxy(kubeconfig: str, out: pathlib.Path) -> Iterator[tuple[SilentProxy, str]]:
    """A proxy to the kubeconfig's API server and a kubeconfig (written to ``out``) that uses it."""
    config = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
    server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    proxy = SilentProxy(server.hostname or "127.0.0.1", server.port or 443)
    port = proxy.start()
    try:
        config["clusters"][0]["cluster"]["server"] = f"https://{server.hostname}:{port}"
        out.write_text(json.dumps(config))
        yield proxy, str(out)
    finally:
        proxy.stop()
