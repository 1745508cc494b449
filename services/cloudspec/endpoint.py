"""Where the embedded cloud listens: <state dir>/run/cloud.json, written once it serves.

    burst service cloud ──writes──▶ run/cloud.json {"endpoint", "imds", "pid", "region"}
    ec2 driver (endpoint = "embedded"), burst status ──read──▶

The port may be chosen at start (cloud_port = 0), so nobody hard-codes it. Where the
cloud runs on another host or container (compose: `http://cloud:5000`), BURST_CLOUD_ENDPOINT
says where its API answers instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from services.runtime.config import Settings

EMBEDDED = "embedded"  # an entry's endpoint naming the built-in emulator
REGION = "us-east-1"  # the emulator's default region (an entry's `region` may name another)
# moto checks neither; real endpoints take boto3's usual chain (AWS_* variables, profiles).
CREDENTIALS = {"aws_access_key_id": "embedded", "aws_secret_access_key": "embedded"}


def info_path(settings: Settings) -> Path:
    return settings.path("run", "cloud.json")


def write_info(settings: Settings, info: dict[str, Any]) -> None:
    path = info_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "pid": os.getpid()}))
    tmp.replace(path)  # readers never see half a file


def read_info(settings: Settings) -> dict[str, Any] | None:
    elsewhere = os.environ.get("BURST_CLOUD_ENDPOINT")
    if elsewhere:
        return {"endpoint": elsewhere.rstrip("/"), "region": REGION}
    try:
        return json.loads(info_path(settings).read_text())
    except (OSError, ValueError):
        return None


def remove_info(settings: Settings) -> None:
    info = read_info(settings)
    if info is not None and info.get("pid") == os.getpid():
        info_path(settings).unlink(missing_ok=True)
