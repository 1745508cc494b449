"""A TCP forwarder in front of the shared broker that a test can cut.

For whoever connects through it, `cut()` is the broker going away: open
connections are reset and new ones refused, while every other client (and
every other test) keeps the shared broker, which is never stopped.

    proxy = BrokerProxy.start(amqp_url)
    proxy.url        # the same URL through 127.0.0.1:<proxy port>
    proxy.cut()      # connections reset, the port refuses from now on
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


@dataclass
class BrokerProxy:
    target: tuple[str, int]
    listener: socket.socket
    amqp_url: str
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cut: bool = False

    @classmethod
    def start(cls, amqp_url: str) -> BrokerProxy:
        parts = urlsplit(amqp_url)
        listener = socket.create_server(("127.0.0.1", 0))
        proxy = cls((parts.hostname or "127.0.0.1", parts.port or 5672), listener, amqp_url)
        threading.Thread(target=proxy._accept, daemon=True, name="broker-proxy").start()
        return proxy

    @property
    def url(self) -> str:
        parts = urlsplit(self.amqp_url)
        userinfo = parts.netloc.rpartition("@")[0]
        port = self.listener.getsockname()[1]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in [self.listener, *self._sockets]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self.listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
