"""Moving one file over HTTP without holding it in memory: presigned URLs and http(s) inputs.

    upload(url, file, size)     PUT, streamed from the file; its sha256 worked out on the way
    download(url, path, ...)    GET, streamed into a new file (0600); sha256 on the way, capped
                                in size, checked against an expected size and sha256

A PUT always says Content-Type: application/octet-stream: moto (the embedded
cloud's S3) stores a body sent with urllib's default form type as an empty
object and still answers 200 (PITFALLS.md), and S3 signs the type into a
presigned PUT. Only http and https are fetched, redirects included (urllib
would follow one to ftp://). `timeout_s` bounds every wait for the network,
not the whole transfer: a big file on a slow link is fine, a stalled one is not.

Errors never repeat the URL: a presigned URL is a capability. Callers name
the file in their own words.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

CHUNK = 1024 * 1024
OCTET_STREAM = "application/octet-stream"
SCHEMES = ("http", "https")


class TransferError(Exception):
    """A file that could not be moved; str() says why, without the URL. `retryable`: the
    other side or the network failed (5xx, no connection, a stall), not the request."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class _HttpOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in SCHEMES:
            raise TransferError(f"redirected to a {urlsplit(newurl).scheme}:// URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnly)


class _Reader:
    """Hands `size` bytes of a file to http.client, hashing them; stops when cancelled."""

    def __init__(self, file: BinaryIO, size: int, cancelled: threading.Event | None):
        self.file, self.left, self.cancelled = file, size, cancelled
        self.hash = hashlib.sha256()
        self.sent = 0

    def read(self, n: int = CHUNK) -> bytes:
        if self.cancelled is not None and self.cancelled.is_set():
            raise TransferError("cancelled")
        data = self.file.read(min(n if n > 0 else CHUNK, self.left))
        self.left -= len(data)
        self.sent += len(data)
        self.hash.update(data)
        return data


def sha256_of(file: BinaryIO) -> tuple[str, int]:
    """(sha256 hex, size) of what is left to read in `file`."""
    digest, size = hashlib.sha256(), 0
    while chunk := file.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def upload(url: str, file: BinaryIO, size: int, *, timeout_s: float,
           cancelled: threading.Event | None = None) -> str:
    """PUT `size` bytes of `file` to `url`; the sha256 (hex) of what was sent."""
    reader = _Reader(file, size, cancelled)
    request = urllib.request.Request(url, data=reader, method="PUT", headers={
        "Content-Type": OCTET_STREAM, "Content-Length": str(size)})
    _exchange(request, timeout_s, lambda answer: answer.read())
    if reader.sent != size:
        raise TransferError(f"the file shrank while it was sent ({reader.sent} of {size} bytes)")
    return reader.hash.hexdigest()


def download(url: str, path: Path, *, max_bytes: int, timeout_s: float, sha256: str = "",
             size: int = -1, cancelled: threading.Event | None = None) -> tuple[str, int]:
    """GET `url` into the new file `path`; (sha256 hex, size). Removed again on any error:
    over max_bytes, another size than `size` (when >= 0), another sha256 (when given)."""
    if urlsplit(url).scheme.lower() not in SCHEMES:
        raise TransferError(f"{urlsplit(url).scheme}:// is not fetched (http, https)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _exchange(urllib.request.Request(url), timeout_s,
                            lambda answer: _copy(answer, out, max_bytes, cancelled))
        if size >= 0 and got[1] != size:
            raise TransferError(f"{got[1]} bytes arrived, {size} expected")
        if sha256 and got[0] != sha256.lower():
            raise TransferError(f"sha256 mismatch: expected {sha256.lower()}, got {got[0]}")
        return got
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _copy(answer, out: BinaryIO, max_bytes: int,
          cancelled: threading.Event | None) -> tuple[str, int]:
    declared = answer.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TransferError(f"{int(declared)} bytes, over the {max_bytes} allowed")
    digest, size = hashlib.sha256(), 0
    while chunk := answer.read(CHUNK):
        if cancelled is not None and cancelled.is_set():
            raise TransferError("cancelled")
        size += len(chunk)
        if size > max_bytes:
            raise TransferError(f"over the {max_bytes} bytes allowed")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), size


def _exchange(request: urllib.request.Request, timeout_s: float, use):
    try:
        with _OPENER.open(request, timeout=timeout_s) as answer:
            return use(answer)
    except urllib.error.HTTPError as exc:
        raise TransferError(f"HTTP {exc.code} {exc.reason}", retryable=exc.code >= 500
                            ) from None
    except urllib.error.URLError as exc:
        raise TransferError(f"cannot connect: {exc.reason}", retryable=True) from None
    except TimeoutError:
        raise TransferError(f"no answer within {timeout_s:g} s", retryable=True) from None
    except OSError as exc:  # a connection reset mid-transfer, a full disk
        raise TransferError(exc.strerror or str(exc), retryable=True) from None
