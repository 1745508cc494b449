"""HTTP beside the bus, for the services that answer browsers and VMs (web, metadata).

    burst service web|metadata ──listen()──▶ ServiceServer (a thread per request) ──▶ routes
                                              .url: what goes in run/<name>.json

A port that is taken is one line naming the setting that moves it.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click


class ServiceServer(ThreadingHTTPServer):
    daemon_threads = True  # open requests (SSE streams) must not hold the process at exit
    allow_reuse_address = True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{host}:{port}"


def listen(server_cls: type[ServiceServer], handler: type[BaseHTTPRequestHandler], host: str,
           port: int, setting: str) -> ServiceServer:
    try:
        return server_cls((host, port), handler)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror}; set [services] {setting} in "
            "BURST_CONFIG (0 takes any free port)") from None


def send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    """One whole answer, never cached (pool state, boot answers)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)
