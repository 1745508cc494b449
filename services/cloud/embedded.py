"""The embedded cloud, wired: API endpoint, metadata service, VM host, and where to find them.

    EmbeddedCloud.start()
      ├─ MetadataService (imds.py)     127.0.0.1:<free port>, one path prefix per VM
      ├─ ApiServer (server.py)         moto EC2 + S3 on [services] cloud_port (0 = free port)
      ├─ VMHost (vmhost.py)            a thread: one watch cycle every cloud_interval_s
      ├─ the [storage] bucket          made when object storage is on this cloud (the
      │                                schedd's job files: services/schedd/storage.py)
      └─ run/cloud.json                {"endpoint", "imds", "region", "pid"}: the drivers'
                                       and `burst status`'s way to the endpoint
"""

from __future__ import annotations

import logging
import threading

import boto3

from services.cloudspec import endpoint
from services.runtime.config import PoolConfig, Settings

from .faults import FaultBudget
from .imds import MetadataService
from .server import ApiServer
from .vmhost import VMHost

log = logging.getLogger("burst.cloud")


class EmbeddedCloud:
    def __init__(self, settings: Settings, pool: PoolConfig, port: int | None = None,
                 host: str = "127.0.0.1"):
        self.settings, self.pool = settings, pool
        self.entries = [e for e in pool.entries if e.endpoint == endpoint.EMBEDDED]
        self.faults = FaultBudget(self.entries)
        self.metadata = MetadataService(host)
        self.api = ApiServer(host, pool.services.cloud_port if port is None else port,
                             self.faults, lambda *launched: self.vmhost.admit(*launched))
        regions = sorted({e.region or endpoint.REGION for e in self.entries} or {endpoint.REGION})
        clients = {region: boto3.client("ec2", endpoint_url=self.api.url, region_name=region,
                                        **endpoint.CREDENTIALS) for region in regions}
        self.vmhost = VMHost(settings.namespace, self.entries, clients, self.metadata,
                             self.faults, settings.path("cloud", "vms"),
                             pool.services.cloud_boot_delay_s)
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="vmhost", daemon=True)

    @property
    def url(self) -> str:
        return self.api.url

    def start(self) -> None:
        self.metadata.start()
        self.api.start()
        self._make_bucket()
        self.watcher.start()
        endpoint.write_info(self.settings, {"endpoint": self.api.url, "imds": self.metadata.url,
                                            "region": endpoint.REGION})
        log.info("event=cloud_started endpoint=%s imds=%s entries=%s", self.api.url,
                 self.metadata.url, ",".join(f"{e.name}:{e.provider}" for e in self.entries))

    def _make_bucket(self) -> None:
        """The bucket of [storage] endpoint = "embedded": nothing of moto's outlives the
        cloud, so it is made at every start."""
        storage = self.pool.storage
        if storage.endpoint != endpoint.EMBEDDED:
            return
        region = storage.region or endpoint.REGION
        s3 = boto3.client("s3", endpoint_url=self.api.url, region_name=region,
                          **endpoint.CREDENTIALS)
        where = {} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=storage.bucket, **where)
        log.info("event=bucket_created bucket=%s", storage.bucket)

    def _watch(self) -> None:
        interval = self.pool.services.cloud_interval_s
        while not self.stopping.is_set():
            try:
                self.vmhost.cycle()
            except Exception:  # the next cycle looks again; a host must not die of one VM
                log.exception("event=vmhost_cycle_failed")
            self.stopping.wait(interval)

    def stop(self) -> None:
        self.stopping.set()
        self.watcher.join(timeout=30)
        self.vmhost.stop()
        self.api.stop()
        self.metadata.stop()
        endpoint.remove_info(self.settings)
