"""The user data of a cloud launch: the one place that decides what a VM is handed.

    factory ──LaunchSpec──▶ user_data_for(spec) ──▶ RunInstances UserData ──▶ the VM's
                                                    IMDS / config drive / context disk
                                                    ──▶ services/glidein/cloudcontext.py

For now it is the pilot's context as a JSON object, with the same names the
local driver sets as environment variables (BURST_PILOT_ID, AMQP_URL, ...).
The metadata broker (issue 8, item 4) replaces the content with a single-use
bootstrap token and the broker's address: change this function and the
glidein's `context_from_user_data`, nothing else.
"""

from __future__ import annotations

import json

from . import LaunchSpec

MAX_USER_DATA = 16 * 1024  # EC2's limit, before base64


def user_data_for(spec: LaunchSpec) -> str:
    context = dict(spec.context)
    if spec.pilot_key:
        # Stopgap until the metadata broker's token exchange: the pilot's own key (never the
        # pool's) rides in user data, readable by whoever can read this VM's user data.
        context["BURST_PILOT_KEY"] = spec.pilot_key.hex()
    text = json.dumps(context, sort_keys=True)
    if len(text.encode()) > MAX_USER_DATA:
        raise ValueError(f"pilot {spec.pilot_id}: user data of {len(text)} bytes is over "
                         f"EC2's {MAX_USER_DATA}")
    return text
