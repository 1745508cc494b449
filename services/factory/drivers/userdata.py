"""The user data of a cloud launch: the one place that decides what a VM is handed.

    factory ──LaunchSpec──▶ user_data_for(spec) ──▶ RunInstances UserData ──▶ the VM's
                                                    IMDS / config drive / context disk
                                                    ──▶ services/glidein/cloudcontext.py

Only a single-use boot token (services/runtime/bootstrap.py) and the URL of the
metadata service that takes it, as a JSON object. No context, no broker URL, no
key, no credential: whoever reads the user data of a VM (DescribeInstanceAttribute,
the console, the VM's own users) holds a token that was spent when the VM booted,
and that expires minutes after launch if it never was.
"""

from __future__ import annotations

import json

from . import LaunchSpec

MAX_USER_DATA = 16 * 1024  # EC2's limit, before base64


def user_data_for(spec: LaunchSpec) -> str:
    if not spec.boot_token or not spec.metadata_url:
        raise ValueError(f"pilot {spec.pilot_id}: a cloud pilot needs a boot token and the "
                         "metadata service's URL (start `burst service metadata`, or set "
                         "[services] metadata_url)")
    text = json.dumps({"BURST_BOOT_TOKEN": spec.boot_token,
                       "BURST_METADATA_URL": spec.metadata_url}, sort_keys=True)
    if len(text.encode()) > MAX_USER_DATA:
        raise ValueError(f"pilot {spec.pilot_id}: user data of {len(text)} bytes is over "
                         f"EC2's {MAX_USER_DATA}")
    return text
