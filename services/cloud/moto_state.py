"""The one place that changes moto's instances behind the EC2 API.

moto makes every instance "running" the moment RunInstances returns and
never changes a state by itself (PITFALLS.md). The EC2 API has no call that
puts an instance back to pending or marks it booted, so the embedded cloud,
which runs moto in its own process, sets those two states on moto's models:
pending as soon as RunInstances has made the instance, running when the VM
host boots it. Everything else (stop, terminate, tags) goes through the API.
"""

from __future__ import annotations

from moto.backends import get_backend


def _instance(account: str, region: str, instance_id: str):
    return get_backend("ec2")[account][region].get_instance(instance_id)


def set_pending(account: str, region: str, instance_id: str) -> None:
    state = _instance(account, region, instance_id).instance_state
    state.name, state.code = "pending", 0


def set_running(account: str, region: str, instance_id: str) -> None:
    _instance(account, region, instance_id).start()
