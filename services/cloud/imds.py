"""The metadata service of the embedded cloud: one HTTP server, one path prefix per VM.

    VM i-abc sees BURST_IMDS_ENDPOINT=http://127.0.0.1:<port>/i-abc   (169.254.169.254 stand-in)
      PUT  /i-abc/latest/api/token   X-aws-ec2-metadata-token-ttl-seconds: 1..21600 → token
      GET  /i-abc/latest/user-data, /latest/meta-data/[<path>]   (+ X-aws-ec2-metadata-token)
      GET  /i-abc/openstack/latest/meta_data.json, .../user_data   (openstack profile)

A real metadata service knows its caller by source address; the prefix
stands in for that. Per profile (profiles.py): `v2` refuses a GET without a
valid token of that VM (401), as AWS with HttpTokens=required; `v1` answers
plain GETs and has no token endpoint (404), as Eucalyptus and OpenStack's
nova metadata service; profiles without a metadata service are not served.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.cloudspec.profiles import Profile

from .serving import ServerThread

TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL_S = 21600


@dataclass(frozen=True)
class Metadata:
    """What the metadata service tells one VM."""

    instance_id: str
    profile: Profile
    user_data: bytes
    meta_data: dict[str, str]  # path under latest/meta-data/ -> value
    openstack: dict  # openstack/latest/meta_data.json


class MetadataService:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.vms: dict[str, Metadata] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (instance id, expiry)
        self.lock = threading.Lock()
        server = ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        self.serving = ServerThread(server, "imds")
        self.start, self.stop = self.serving.start, self.serving.stop

    @property
    def url(self) -> str:
        return self.serving.url

    def base_url(self, instance_id: str) -> str:
        return f"{self.url}/{instance_id}"

    def publish(self, metadata: Metadata) -> None:
        with self.lock:
            self.vms[metadata.instance_id] = metadata

    def withdraw(self, instance_id: str) -> None:
        with self.lock:
            self.vms.pop(instance_id, None)
            self.tokens = {t: v for t, v in self.tokens.items() if v[0] != instance_id}

    # --- answers: (status, body) ----------------------------------------------------------

    def new_token(self, instance_id: str, ttl: str | None) -> tuple[int, bytes]:
        vm = self.vms.get(instance_id)
        if vm is None or vm.profile.imds != "v2":
            return 404, b"Not Found"
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TOKEN_TTL_S:
            return 400, b"Bad Request: X-aws-ec2-metadata-token-ttl-seconds 1..21600"
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (instance_id, time.time() + int(ttl))
        return 200, token.encode()

    def get(self, instance_id: str, path: str, token: str | None) -> tuple[int, bytes]:
        vm = self.vms.get(instance_id)
        if vm is None or not vm.profile.imds:
            return 404, b"Not Found"
        if vm.profile.imds == "v2":
            owner, expiry = self.tokens.get(token or "", ("", 0.0))
            if owner != instance_id or time.time() > expiry:
                return 401, b"Unauthorized"
        if path == "latest/user-data":
            return (200, vm.user_data) if vm.user_data else (404, b"Not Found")
        if path.startswith("latest/meta-data"):
            return _meta_data(vm.meta_data, path.removeprefix("latest/meta-data").strip("/"))
        if vm.profile.openstack_metadata and path == "openstack/latest/meta_data.json":
            return 200, json.dumps(vm.openstack).encode()
        if vm.profile.openstack_metadata and path == "openstack/latest/user_data":
            return 200, vm.user_data
        return 404, b"Not Found"


def _meta_data(meta: dict[str, str], path: str) -> tuple[int, bytes]:
    if path in meta:
        return 200, meta[path].encode()
    prefix = f"{path}/" if path else ""
    below = sorted({k[len(prefix):].split("/")[0] + ("/" if "/" in k[len(prefix):] else "")
                    for k in meta if k.startswith(prefix)})
    return (200, "\n".join(below).encode()) if below else (404, b"Not Found")


def _handler(service: MetadataService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _split(self) -> tuple[str, str]:
            instance_id, _, path = self.path.split("?")[0].lstrip("/").partition("/")
            return instance_id, path.rstrip("/")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
            instance_id, path = self._split()
            if path != "latest/api/token":
                self._answer(404, b"Not Found")
                return
            self._answer(*service.new_token(instance_id, self.headers.get(TOKEN_TTL_HEADER)))

        def do_GET(self) -> None:  # noqa: N802
            instance_id, path = self._split()
            self._answer(*service.get(instance_id, path, self.headers.get(TOKEN_HEADER)))

        def log_message(self, format: str, *args) -> None:  # quiet: the VM host logs boots
            pass

    return Handler
