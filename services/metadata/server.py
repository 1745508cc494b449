"""HTTP routes of the metadata service: what a booting VM can reach before it has a broker.

    POST /v1/boot   {"token", "instance_id", "public_key"} ─▶ 200 {"sealed": base64}
                                                            403 "refused: <reason>"
                                                            400 not a boot request
    GET  /healthz   {"ok": true}

Plain HTTP: what crosses it is a token that works once and an answer sealed to a key the
VM made a moment before (services/runtime/sealing.py), so an eavesdropper learns nothing
it can use. Put TLS in front anyway where VMs reach it over networks you do not trust.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.trace import SpanKind

from services.runtime import httpserve, tracing

log = logging.getLogger("burst.metadata")

MAX_BODY = 16 * 1024


class MetadataServer(httpserve.ServiceServer):
    broker: Any  # handlers.MetadataBroker, set when it starts


class BootHandler(BaseHTTPRequestHandler):
    server_version = "burst-metadata"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("event=http_request client=%s request=%r", self.client_address[0],
                  format % args)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._write(200, b'{"ok": true}', "application/json")
        else:
            self._write(404, b"no such page\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if self.path != "/v1/boot":
            self._write(404, b"no such page\n", "text/plain; charset=utf-8")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._write(400, b"expected a JSON body of at most 16 KiB\n",
                        "text/plain; charset=utf-8")
            return
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._write(400, b"expected a JSON object\n", "text/plain; charset=utf-8")
            return
        # In the trace of the VM's boot (its request carries a traceparent).
        with tracing.span("exchange boot token", parent=self.headers.get("traceparent"),
                          kind=SpanKind.SERVER, attributes={"http.route": "/v1/boot"}) as span:
            answer = self.server.broker.exchange(request, self.client_address[0])
            span.set_attribute("http.response.status_code", answer.status)
        self._write(answer.status, answer.body, answer.content_type)

    def _write(self, status: int, body: bytes, content_type: str) -> None:
        try:
            httpserve.send(self, status, content_type, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
