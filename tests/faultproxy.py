"""A fault-injecting TCP proxy for connection tests (after psycopg's test proxy): it forwards
bytes between a client and a server on 127.0.0.1 and can cut the stream after N bytes from
the server (a frame dropped mid-way), stall the server's bytes, or reset the connections."""
from __future__ import annotations

import socket as std_socket
import struct

import gevent
from gevent import socket
from gevent.server import StreamServer


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after_s2c: int | None = None  # total server bytes after which to cut
        self._s2c_total = 0
        self.stalled = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> "FaultProxy":
        self._server.start()
        return self

    def stop(self) -> None:
        self.reset()
        self._server.stop(timeout=1)

    @property
    def port(self) -> int:
        return self._server.server_port

    def _handle(self, client, _address) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        upstream.settimeout(None)
        self._pairs.append((client, upstream))
        sent = {"s2c": 0, "c2s": 0}

        def pump(src, dst, direction):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    while direction == "s2c" and self.stalled:
                        gevent.sleep(0.01)
                    if direction == "s2c" and self.cut_after_s2c is not None:
                        room = self.cut_after_s2c - sent["s2c"]
                        if room <= len(data):
                            dst.sendall(data[:max(room, 0)])
                            break
                    dst.sendall(data)
                    sent[direction] += len(data)
                    if direction == "s2c":
                        self._s2c_total = sent["s2c"]
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass

        gevent.joinall([gevent.spawn(pump, client, upstream, "c2s"),
                        gevent.spawn(pump, upstream, client, "s2c")])

    def cut_after(self, more_bytes: int) -> None:
        """Cut the (latest) connection once the server has sent more_bytes more bytes."""
        self.cut_after_s2c = self._s2c_total + more_bytes

    def reset(self) -> None:
        """Abort every proxied connection with a TCP RST (SO_LINGER 0)."""
        for client, upstream in self._pairs:
            for s in (client, upstream):
                try:
                    s.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass
        self._pairs.clear()
