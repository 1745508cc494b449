"""The ec2 driver: pilots as VMs through the EC2 API of AWS, OpenStack, OpenNebula,
Eucalyptus or the embedded cloud (`endpoint = "embedded"`).

    launch(spec)     DescribeInstances(tag burst:pilot-id)  look before launch: moto ignores
                     RunInstances(ClientToken, tags, user data)  ClientToken, a retry must not
                                                                 make a second VM
    instances(entry) DescribeInstances(tags pool + entry), paginated: calls grow with
                     entries (and pages of 1000 VMs), never one per VM
    terminate(id)    queued; flush() sends TerminateInstances per 1000 ids

Credentials: each launch carries the group's credential for the entry's trust
domain (an access key and secret key, opened by the factory from the group's
request); the driver keeps a client per account, lists each account's VMs, and
terminates each VM with the account that launched it. An entry with
`credential = "none"` uses boto3's own chain (the embedded cloud: any keys).

Every call goes through CloudCalls (cloudcalls.py): a token bucket per entry,
retries with jittered backoff on throttling, capacity and 5xx answers, a
counter per call and outcome, a cloud.call_failed event per failure.

VM states as the factory sees them: pending and running are "running";
stopping and stopped are "stopped" (the guest shut down, the VM still holds
quota: OpenStack and OpenNebula leave VMs so, and the factory terminates
them); shutting-down and terminated are "gone".
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

import boto3

from services.cloudspec import endpoint as embedded
from services.cloudspec.profiles import profile_for
from services.runtime import credentials
from services.runtime.config import EntryConfig, Settings

from . import Instance, LaunchSpec
from .cloudcalls import BOTO_CONFIG, CloudCalls, CloudError, RetryPolicy, TokenBucket
from .userdata import user_data_for

log = logging.getLogger("burst.factory.ec2")

TAG_POOL, TAG_ENTRY, TAG_FACTORY = "burst:pool", "burst:entry", "burst:factory"
TAG_GROUP, TAG_PILOT = "burst:group", "burst:pilot-id"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
STATE = {"pending": "running", "running": "running", "stopping": "stopped",
         "stopped": "stopped", "shutting-down": "gone", "terminated": "gone"}
PAGE_SIZE = 1000  # DescribeInstances' largest page
TERMINATE_BATCH = 1000  # TerminateInstances takes up to 1000 ids
FILTER_VALUES = 200  # values per DescribeInstances filter
LISTING_LAG_S = 30.0  # AWS lists a new instance "eventually"; until then trust RunInstances
FORGET_GONE_S = 3600.0
EMBEDDED_IMAGE = "ami-0b0b5e0c1ea9d0000"  # moto accepts any image id
EMBEDDED_INSTANCE_TYPE = "t3.small"
DEFAULT_ACCOUNT = ""  # boto3's own chain: AWS_* variables, profiles, an instance role


class EC2Driver:
    name = "ec2"
    boot_token = True  # pilots boot from user data: the factory hands each launch a token

    def __init__(self, entry: EntryConfig, settings: Settings, *, emit=None, client=None,
                 bucket: TokenBucket | None = None, retry: RetryPolicy | None = None,
                 page_size: int = PAGE_SIZE, terminate_batch: int = TERMINATE_BATCH,
                 listing_lag_s: float | None = None):
        self.entry, self.settings, self.emit = entry, settings, emit
        self.embedded = entry.endpoint == embedded.EMBEDDED
        self.profile = profile_for(entry.provider)
        self.image = entry.image or (EMBEDDED_IMAGE if self.embedded else "")
        self.instance_type = entry.instance_type or (
            EMBEDDED_INSTANCE_TYPE if self.embedded else "")
        if not (self.image and self.instance_type):
            raise ValueError(f"entry {entry.name}: driver ec2 needs image and instance_type")
        if not all(isinstance(g, str) for g in entry.security_groups):
            raise ValueError(f"entry {entry.name}: security_groups must be a list of names/ids")
        self.bucket = bucket or TokenBucket(rate_per_s=5.0, burst=10)
        self.retry = retry or RetryPolicy()
        self.page_size, self.terminate_batch = page_size, terminate_batch
        self.listing_lag_s = (0.0 if self.embedded else LISTING_LAG_S) if listing_lag_s is None \
            else listing_lag_s
        self._client = client  # tests: one client for every account
        # Accounts: access key id -> (id, secret); "" is boto3's own chain (or the embedded
        # cloud's dummy keys), used only by entries that need no credential.
        self._keys: dict[str, tuple[str, str] | None] = {}
        if entry.credential == credentials.NONE:
            self._keys[DEFAULT_ACCOUNT] = None
        self._calls: dict[str, CloudCalls] = {}
        self._account_of: dict[str, str] = {}  # pilot id -> the account its VM is in
        self._known: dict[str, Instance] = {}  # pilot id -> its VM, as last seen
        self._gone: dict[str, float] = {}  # pilot id -> when its VM was seen gone
        self._terminating: set[str] = set()

    # --- the endpoint and the accounts -------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """What users point boto3 at: the resolved URL for the embedded cloud."""
        if self.embedded:
            info = embedded.read_info(self.settings)
            return info["endpoint"] if info else self.entry.endpoint
        return self.entry.endpoint

    @property
    def blind(self) -> bool:
        """No account to look with yet: the entry's credential comes with a group's request,
        and until then the driver cannot tell a VM that is gone from one it cannot see."""
        return not self._keys

    def credential_arrived(self, secret: bytes) -> bool:
        """A group's credential for this entry (opened by the factory); True when it is an
        account this driver did not know, whose VMs it can list from now on."""
        known = set(self._keys)
        return self._account(secret) not in known

    def _account(self, secret: bytes) -> str:
        if not secret:
            if DEFAULT_ACCOUNT not in self._keys:
                raise CloudError("Credentials", "NoCredential",
                                 f"entry {self.entry.name} needs a {self.entry.credential} "
                                 f"credential of trust domain {self.entry.trust_domain}, and "
                                 "the request carried none for this factory", retryable=False)
            return DEFAULT_ACCOUNT
        try:
            access, key = credentials.ec2_keys(secret)
        except ValueError as exc:
            raise CloudError("Credentials", "BadCredential", str(exc), retryable=False) from None
        self._keys[access] = (access, key)
        return access

    def calls(self, account: str = DEFAULT_ACCOUNT) -> CloudCalls:
        """The paced, counted calls of one account (one whose keys the driver holds)."""
        if account not in self._keys:
            raise KeyError(f"entry {self.entry.name}: no credential of account {account!r}")
        if account not in self._calls:
            self._calls[account] = CloudCalls(
                self._client or self._new_client(self._keys.get(account)),
                entry=self.entry.name, endpoint=self.endpoint_url, bucket=self.bucket,
                retry=self.retry, emit=self.emit)
        return self._calls[account]

    def _new_client(self, keys: tuple[str, str] | None) -> Any:
        given = {} if keys is None else {"aws_access_key_id": keys[0],
                                         "aws_secret_access_key": keys[1]}
        if not self.embedded:
            return boto3.client("ec2", endpoint_url=self.entry.endpoint or None,
                                region_name=self.entry.region or None, config=BOTO_CONFIG,
                                **given)
        info = embedded.read_info(self.settings)
        if info is None:
            raise CloudError("Connect", "EmbeddedCloudDown",
                             f"no {embedded.info_path(self.settings)}: start the embedded cloud "
                             "(burst up starts it; alone: burst service cloud)", retryable=False)
        return boto3.client("ec2", endpoint_url=info["endpoint"], config=BOTO_CONFIG,
                            region_name=self.entry.region or embedded.REGION,
                            **(given or embedded.CREDENTIALS))

    def _call(self, fn):
        try:
            return fn()
        except CloudError as exc:
            if self.embedded and exc.code in ("EndpointConnectionError", "EmbeddedCloudDown"):
                self._calls.clear()  # the cloud restarted, maybe on another port: look again
            raise

    # --- the Driver interface ----------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> Instance:
        known = self._known.get(spec.pilot_id)
        if known is not None:
            return known
        account = self._account(spec.credential)

        def look_then_run() -> Instance:
            found = self._lookup([spec.pilot_id], account, retried=False).get(spec.pilot_id)
            if found is not None and found.state != "gone":
                return found
            answer = self.calls(account).once("RunInstances", **self.run_params(spec))
            raw = answer["Instances"][0]
            return Instance(spec.pilot_id, spec.entry, spec.group, raw["InstanceId"],
                            "running", time.time())

        instance = self._call(lambda: self.calls(account).retrying(look_then_run))
        self._known[spec.pilot_id] = instance
        self._account_of[spec.pilot_id] = account
        log.info("event=vm_launched entry=%s pilot=%s instance=%s", spec.entry, spec.pilot_id,
                 instance.instance_id)
        return instance

    def run_params(self, spec: LaunchSpec) -> dict[str, Any]:
        tags = {TAG_POOL: self.settings.namespace, TAG_ENTRY: spec.entry,
                TAG_FACTORY: spec.factory, TAG_GROUP: spec.group, TAG_PILOT: spec.pilot_id,
                "Name": spec.pilot_id}
        params: dict[str, Any] = {
            "ImageId": self.image, "InstanceType": self.instance_type, "MinCount": 1,
            "MaxCount": 1, "UserData": user_data_for(spec),
            "ClientToken": client_token(self.settings.namespace, spec.pilot_id),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": k, "Value": v} for k, v in tags.items()]}],
        }
        if self.entry.key_name:
            params["KeyName"] = self.entry.key_name
        ids = [g for g in self.entry.security_groups if g.startswith("sg-")]
        names = [g for g in self.entry.security_groups if not g.startswith("sg-")]
        if ids:
            params["SecurityGroupIds"] = ids
        if names:
            params["SecurityGroups"] = names
        if self.entry.subnet_id:
            params["SubnetId"] = self.entry.subnet_id
        if self.profile.sends_shutdown_flag:
            params["InstanceInitiatedShutdownBehavior"] = "terminate"
        return params

    def instances(self, entry: str) -> list[Instance]:
        """The entry's VMs in every account it has seen: one paginated listing each."""
        listed: dict[str, Instance] = {}
        for account in list(self._keys):
            found = self._call(lambda account=account: self._describe([
                {"Name": f"tag:{TAG_POOL}", "Values": [self.settings.namespace]},
                {"Name": f"tag:{TAG_ENTRY}", "Values": [entry]}], account, retried=True))
            for pilot_id in found:
                self._account_of[pilot_id] = account
            listed.update(found)
        now = time.time()
        for pilot_id, known in list(self._known.items()):
            if known.entry != entry or pilot_id in listed:
                continue
            if now - known.launched_at < self.listing_lag_s:
                listed[pilot_id] = known  # launched a moment ago; the listing will catch up
            else:
                self._forget(pilot_id, now)
        self._known.update(listed)
        for pilot_id, since in list(self._gone.items()):
            if now - since > FORGET_GONE_S:
                del self._gone[pilot_id]
        return list(listed.values())

    def terminate(self, pilot_id: str) -> None:
        self._terminating.add(pilot_id)

    def flush(self) -> None:
        """Send the queued terminations: one TerminateInstances per account and 1000 VMs."""
        pilots, self._terminating = self._terminating - set(self._gone), set()
        unknown = [p for p in pilots if p not in self._known]
        for account in list(self._keys) if unknown else []:
            found = self._call(lambda account=account: self._lookup(unknown, account,
                                                                    retried=True))
            self._known.update(found)
            self._account_of.update(dict.fromkeys(found, account))
        by_account: dict[str, set[str]] = {}
        for pilot_id in pilots:
            if pilot_id in self._known and self._account_of.get(pilot_id) in self._keys:
                by_account.setdefault(self._account_of[pilot_id], set()).add(
                    self._known[pilot_id].instance_id)
        for account, found in by_account.items():
            ids = sorted(found)
            for start in range(0, len(ids), self.terminate_batch):
                self._call(lambda batch=ids[start:start + self.terminate_batch],
                           account=account: self._terminate(batch, account))
        now = time.time()
        for pilot_id in pilots:
            self._forget(pilot_id, now)

    def _forget(self, pilot_id: str, now: float) -> None:
        """The VM is gone (or going): never list, look up or terminate it again."""
        self._known.pop(pilot_id, None)
        self._account_of.pop(pilot_id, None)
        self._gone[pilot_id] = now

    # --- pieces ------------------------------------------------------------------------------

    def _terminate(self, ids: list[str], account: str) -> None:
        try:
            self.calls(account).call("TerminateInstances", InstanceIds=ids)
        except CloudError as exc:
            # One id the cloud has forgotten fails the whole call: drop those and go on.
            missing = set(re.findall(r"i-[0-9a-zA-Z]+", exc.message))
            if exc.code != "InvalidInstanceID.NotFound" or not missing & set(ids):
                raise
            rest = [i for i in ids if i not in missing]
            if rest:
                self.calls(account).call("TerminateInstances", InstanceIds=rest)
        log.info("event=vms_terminated entry=%s count=%d", self.entry.name, len(ids))

    def _lookup(self, pilot_ids: list[str], account: str, retried: bool
                ) -> dict[str, Instance]:
        found: dict[str, Instance] = {}
        for start in range(0, len(pilot_ids), FILTER_VALUES):
            found.update(self._describe([
                {"Name": f"tag:{TAG_POOL}", "Values": [self.settings.namespace]},
                {"Name": f"tag:{TAG_PILOT}", "Values": pilot_ids[start:start + FILTER_VALUES]}],
                account, retried=retried))
        return found

    def _describe(self, filters: list[dict], account: str, retried: bool
                  ) -> dict[str, Instance]:
        """One paginated DescribeInstances of the live VMs matching `filters`, by pilot id."""
        filters = [*filters, {"Name": "instance-state-name", "Values": LIVE_STATES}]
        calls = self.calls(account)
        found: dict[str, Instance] = {}
        token = None
        while True:
            params: dict[str, Any] = {"Filters": filters, "MaxResults": self.page_size}
            if token:
                params["NextToken"] = token
            page = (calls.call if retried else calls.once)("DescribeInstances", **params)
            for reservation in page.get("Reservations", []):
                for raw in reservation.get("Instances", []):
                    instance = _instance(raw)
                    if instance is not None:
                        found[instance.pilot_id] = instance
            token = page.get("NextToken")
            if not token:
                return found


def _instance(raw: dict) -> Instance | None:
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    if TAG_PILOT not in tags:
        return None
    launched = raw.get("LaunchTime")
    return Instance(tags[TAG_PILOT], tags.get(TAG_ENTRY, ""), tags.get(TAG_GROUP, ""),
                    raw["InstanceId"], STATE.get(raw["State"]["Name"], "gone"),
                    launched.timestamp() if launched else time.time())


def client_token(pool: str, pilot_id: str) -> str:
    """RunInstances' idempotency token (64 ASCII chars at most), one per pilot."""
    return "burst-" + hashlib.sha256(f"{pool}/{pilot_id}".encode()).hexdigest()[:40]
