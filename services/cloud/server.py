"""The embedded cloud's API endpoint: moto's EC2 and S3, behind a thin fault-injection layer.

    boto3 / aws CLI ──HTTP──▶ FaultInjection ──▶ moto (EC2, S3, ... all of moto)
                               │ RequestLimitExceeded, launch errors (faults.py)
                               └ RunInstances answered ──▶ on_launched(account, region, ids)

It is what moto.server.ThreadedMotoServer serves (the same werkzeug server,
app and request handler) with one WSGI layer in front: faults have to come
from the cloud's side of the wire, and the VM host has to hear of a new
instance before its caller does, to make it pending (moto_state.py).
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from .faults import FaultBudget
from .serving import ServerThread

STATUS = {"RequestLimitExceeded": "503 Service Unavailable",
          "InsufficientInstanceCapacity": "500 Internal Server Error"}
REGION = re.compile(r"Credential=[^/]+/\d+/([^/]+)/")


class FaultInjection:
    """WSGI middleware: EC2 query calls that name an entry may fail as its faults say."""

    def __init__(self, app: Any, faults: FaultBudget,
                 on_launched: Callable[[str, str, list[str]], None]):
        self.app, self.faults, self.on_launched = app, faults, on_launched

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            return self.app(environ, start_response)  # not an EC2 query call (S3, ...)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        params = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        action, entry = params.get("Action", ""), entry_named(params)
        if entry and action in ("RunInstances", "DescribeInstances") and \
                self.faults.take(entry, "throttle"):
            return _error(start_response, "RequestLimitExceeded", "Request limit exceeded.")
        if entry and action == "RunInstances" and self.faults.take(entry, "launch_errors"):
            code = self.faults.of(entry).launch_error
            return _error(start_response, code, f"injected launch error for entry {entry}")
        if action != "RunInstances":
            return self.app(environ, start_response)
        return self._run_instances(environ, start_response)

    def _run_instances(self, environ: dict, start_response: Callable) -> list[bytes]:
        answered: list = []
        chunks = self.app(environ, lambda status, headers, *exc: answered.append(
            (status, headers)) or (lambda _data: None))
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status, headers = answered[0]
        if status.startswith("200"):
            text = body.decode(errors="replace")
            region = REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
            owner = re.search(r"<ownerId>(\d+)</ownerId>", text)
            self.on_launched(owner.group(1) if owner else "", region.group(1) if region else "",
                             re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text))
        start_response(status, headers)
        return [body]


def entry_named(params: dict[str, str]) -> str:
    """The burst:entry a RunInstances tags or a DescribeInstances filters on, if any."""
    for key, value in params.items():
        if value == "burst:entry" and key.startswith("TagSpecification.") and \
                key.endswith(".Key"):
            return params.get(key[:-len("Key")] + "Value", "")
        if value == "tag:burst:entry" and key.startswith("Filter.") and key.endswith(".Name"):
            return params.get(key[:-len("Name")] + "Value.1", "")
    return ""


def _error(start_response: Callable, code: str, message: str) -> list[bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}'
            f"</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()
    start_response(STATUS.get(code, "400 Bad Request"),
                   [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


class ApiServer(ServerThread):
    """moto's endpoint on host:port (0: any free port) in a thread."""

    def __init__(self, host: str, port: int, faults: FaultBudget,
                 on_launched: Callable[[str, str, list[str]], None]):
        app = FaultInjection(DomainDispatcherApplication(create_backend_app), faults, on_launched)
        super().__init__(make_server(host, port, app, threaded=True,
                                     request_handler=MotoRequestHandler), "cloud-api")
