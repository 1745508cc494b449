"""A TCP forwarder in front of the shared broker that a test can cut and restore.

For whoever connects through it, `cut()` is the broker going away: open
connections are reset and new ones refused, while every other client (and
every other test) keeps the shared broker, which is never stopped.

    proxy = BrokerProxy.start(amqp_url)
    proxy.url        # the same URL through 127.0.0.1:<proxy port>
    proxy.cut()      # connections reset, the port refuses from now on
    proxy.restore()  # the same port forwards again: the broker is back
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


@dataclass
class BrokerProxy:
    target: tuple[str, int]
    amqp_url: str
    port: int = 0
    _listener: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, amqp_url: str) -> BrokerProxy:
        parts = urlsplit(amqp_url)
        proxy = cls((parts.hostname or "127.0.0.1", parts.port or 5672), amqp_url)
        proxy.restore()
        return proxy

    @property
    def url(self) -> str:
        parts = urlsplit(self.amqp_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name="broker-proxy").start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            for sock in [listener, *self._sockets]:
                if sock is None:
                    continue
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
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
