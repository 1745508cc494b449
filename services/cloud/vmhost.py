"""The VM host: turns the pool's instances into glidein processes, as a hypervisor would.

    every interval: DescribeInstances (tag burst:pool, paginated) ──▶ for each instance
      new                    pending (moto_state), boots boot_delay_s later
                             (never, for a never_boot fault)
      pending, time to boot  running; its user data goes where its profile puts it
                             (IMDS, config drive, context disk) and a glidein starts
                             with only the variables that say where to look
      running, glidein gone  the guest shut down: TerminateInstances where the profile
                             honours InstanceInitiatedShutdownBehavior=terminate and the
                             instance asked for it, else StopInstances and the tag
                             burst:vm-state = SHUTOFF (OpenStack) / UNKNOWN (OpenNebula)
      stopped / terminated   through the API while its glidein runs: power off
                             (SIGKILL the glidein and its jobs)
      running, not booted    started again through the API: boots (again)
      vanish fault           terminated by the cloud itself, glidein killed

One DescribeInstances per region per cycle, whatever the number of VMs; the
per-VM calls happen once per boot (user data, shutdown flag) and shutdown.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from services.cloudspec.profiles import HONOURED, Profile, profile_for
from services.runtime.config import REPO_ROOT, EntryConfig

from . import moto_state, vmdisks
from .faults import FaultBudget
from .imds import Metadata, MetadataService

log = logging.getLogger("burst.cloud.vmhost")

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
STATE_TAG = "burst:vm-state"  # the middleware's own state name, which EC2 cannot say
POWER_OFF_GRACE_S = 10.0


@dataclass
class VM:
    instance_id: str
    account: str
    region: str
    pilot_id: str
    entry: str
    profile: Profile
    instance_type: str
    zone: str
    spot: bool
    home: Path
    boot_at: float | None  # None: never boots
    state: str = "pending"  # as the host sees it: pending | running | stopped
    process: subprocess.Popen | None = None
    vanish_at: float | None = None
    terminate_on_shutdown: bool = False


class VMHost:
    def __init__(self, namespace: str, entries: list[EntryConfig], clients: dict[str, Any],
                 metadata: MetadataService, faults: FaultBudget, root: Path,
                 boot_delay_s: float):
        self.namespace = namespace
        self.providers = {e.name: e.provider for e in entries}
        self.clients = clients  # region -> boto3 EC2 client of this cloud
        self.metadata, self.faults, self.root = metadata, faults, root
        self.boot_delay_s = boot_delay_s
        self.vms: dict[str, VM] = {}
        self.admitted: dict[str, float] = {}  # instance id -> when RunInstances made it
        self.lock = threading.Lock()

    # --- called by the API server as RunInstances answers -----------------------------------

    def admit(self, account: str, region: str, instance_ids: list[str]) -> None:
        now = time.time()
        for instance_id in instance_ids:
            moto_state.set_pending(account, region, instance_id)
            with self.lock:
                self.admitted[instance_id] = now

    # --- the watch cycle -----------------------------------------------------------------------

    def cycle(self) -> None:
        with self.lock:  # admitted after a cycle had already seen them: never popped
            stale = time.time() - 60.0
            self.admitted = {i: t for i, t in self.admitted.items() if t > stale}
        for region, client in self.clients.items():
            listed = self._describe(client)
            now = time.time()
            for instance_id, (account, raw) in listed.items():
                vm = self.vms.get(instance_id)
                if vm is None:
                    self.vms[instance_id] = self._new_vm(account, region, raw, now)
                    continue
                self._step(vm, raw["State"]["Name"], client, now)
            for vm in [v for v in self.vms.values() if v.region == region
                       and v.instance_id not in listed]:
                self._power_off(vm, "terminated")
                self._forget(vm)

    def _step(self, vm: VM, api_state: str, client: Any, now: float) -> None:
        if api_state == "pending":
            if vm.boot_at is not None and now >= vm.boot_at:
                self._boot(vm, client)
        elif api_state == "running":
            if vm.state in ("pending", "stopped"):
                self._boot(vm, client)  # StartInstances (or a boot that failed half-way)
            elif vm.state == "running" and vm.process is not None and \
                    vm.process.poll() is not None:
                self._guest_shutdown(vm, client)
            elif vm.state == "running" and vm.vanish_at is not None and now >= vm.vanish_at:
                self._power_off(vm, "vanished (fault)")
                client.terminate_instances(InstanceIds=[vm.instance_id])
        elif vm.state != "stopped":  # stopping, stopped, shutting-down through the API
            self._power_off(vm, api_state)
            vm.state = "stopped"

    def _new_vm(self, account: str, region: str, raw: dict, now: float) -> VM:
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
        entry = tags.get("burst:entry", "")
        with self.lock:
            seen = self.admitted.pop(raw["InstanceId"], None)
        if seen is None:  # made some other way (spot request, fleet): pending from now
            moto_state.set_pending(account, region, raw["InstanceId"])
            seen = now
        never = self.faults.take(entry, "never_boot")
        vm = VM(raw["InstanceId"], account, region, tags.get("burst:pilot-id", ""), entry,
                profile_for(self.providers.get(entry, "")), raw.get("InstanceType", ""),
                raw.get("Placement", {}).get("AvailabilityZone", ""),
                raw.get("InstanceLifecycle") == "spot", self.root / raw["InstanceId"],
                None if never else seen + self.boot_delay_s)
        log.info("event=vm_pending instance=%s entry=%s profile=%s boots_in_s=%s",
                 vm.instance_id, entry, vm.profile.name,
                 "never" if never else f"{self.boot_delay_s:g}")
        return vm

    # --- boot and shutdown ---------------------------------------------------------------------

    def _boot(self, vm: VM, client: Any) -> None:
        moto_state.set_running(vm.account, vm.region, vm.instance_id)
        user_data = _attribute(client, vm.instance_id, "userData")
        user_data = base64.b64decode(user_data) if user_data else b""
        vm.terminate_on_shutdown = _attribute(
            client, vm.instance_id, "instanceInitiatedShutdownBehavior") == "terminate"
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("BURST_") or k == "AMQP_URL") or k == "BURST_LOG_LEVEL"}
        env.update(self._media(vm, user_data))
        env["BURST_PILOT_WORK_DIR"] = str(vm.home / "work")  # the VM's scratch disk
        vm.home.mkdir(parents=True, exist_ok=True)
        with open(vm.home / "console.log", "ab") as console:
            vm.process = subprocess.Popen(
                [sys.executable, "-m", "services.glidein"], env=env, cwd=str(REPO_ROOT),
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True)
        vm.state = "running"
        if self.faults.take(vm.entry, "vanish"):
            vm.vanish_at = time.time() + self.faults.of(vm.entry).vanish_after_s
        log.info("event=vm_booted instance=%s entry=%s profile=%s pid=%d", vm.instance_id,
                 vm.entry, vm.profile.name, vm.process.pid)

    def _media(self, vm: VM, user_data: bytes) -> dict[str, str]:
        """Hand the user data over the profile's way; return the variables saying where."""
        name = vm.pilot_id or vm.instance_id
        meta = {"instance-id": vm.instance_id, "instance-type": vm.instance_type,
                "placement/availability-zone": vm.zone, "hostname": name,
                "local-hostname": name,
                "instance-life-cycle": "spot" if vm.spot else "on-demand"}
        if vm.profile.partition:
            meta["services/partition"] = vm.profile.partition
        where = {}
        if vm.profile.imds:
            self.metadata.publish(Metadata(
                vm.instance_id, vm.profile, user_data, meta,
                vmdisks.openstack_meta_data(vm.instance_id, name, vm.zone)))
            where["BURST_IMDS_ENDPOINT"] = self.metadata.base_url(vm.instance_id)
        if vm.profile.config_drive:
            where["BURST_CONFIG_DRIVE"] = str(vmdisks.write_config_drive(
                vm.home / "config-drive", vm.instance_id, user_data, name, vm.zone,
                {k: v for k, v in meta.items() if "/" not in k}))
        if vm.profile.context_disk:
            where["BURST_CONTEXT_DISK"] = str(vmdisks.write_context_disk(
                vm.home / "context", vm.instance_id, user_data, name, vm.instance_type))
        return where

    def _guest_shutdown(self, vm: VM, client: Any) -> None:
        """The glidein ended, so the guest powers off; what is left depends on the middleware."""
        terminate = vm.profile.shutdown_flag == HONOURED and vm.terminate_on_shutdown
        if terminate:
            client.terminate_instances(InstanceIds=[vm.instance_id])
        else:
            client.stop_instances(InstanceIds=[vm.instance_id])
            if vm.profile.stopped_state:
                client.create_tags(Resources=[vm.instance_id], Tags=[
                    {"Key": STATE_TAG, "Value": vm.profile.stopped_state}])
        vm.state = "stopped"
        log.info("event=vm_guest_shutdown instance=%s profile=%s exit_code=%s left=%s",
                 vm.instance_id, vm.profile.name, vm.process.returncode if vm.process else None,
                 "terminated" if terminate else vm.profile.stopped_state or "stopped")

    def _power_off(self, vm: VM, why: str) -> None:
        """Pull the plug: the glidein and everything it started die at once."""
        if vm.process is None or vm.process.poll() is not None:
            return
        _kill_tree(vm.process.pid)
        vm.process.wait()
        log.info("event=vm_powered_off instance=%s why=%s", vm.instance_id, why)

    def _forget(self, vm: VM) -> None:
        self.vms.pop(vm.instance_id, None)
        self.metadata.withdraw(vm.instance_id)

    def stop(self) -> None:
        """The host goes down: glideins get SIGTERM (they say goodbye), then SIGKILL."""
        running = [vm for vm in self.vms.values()
                   if vm.process is not None and vm.process.poll() is None]
        for vm in running:
            vm.process.terminate()
        deadline = time.monotonic() + POWER_OFF_GRACE_S
        for vm in running:
            try:
                vm.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._power_off(vm, "host stopping")

    # --- reading the API -----------------------------------------------------------------------

    def _describe(self, client: Any) -> dict[str, tuple[str, dict]]:
        """The pool's live instances: one paginated DescribeInstances."""
        found = {}
        pages = client.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "tag:burst:pool", "Values": [self.namespace]},
            {"Name": "instance-state-name", "Values": LIVE_STATES}])
        for page in pages:
            for reservation in page.get("Reservations", []):
                for raw in reservation.get("Instances", []):
                    found[raw["InstanceId"]] = (reservation.get("OwnerId", ""), raw)
        return found


def _attribute(client: Any, instance_id: str, name: str) -> str:
    answer = client.describe_instance_attribute(InstanceId=instance_id, Attribute=name)
    key = name[0].upper() + name[1:]
    return (answer.get(key) or {}).get("Value", "")


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
