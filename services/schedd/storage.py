"""The schedd's object storage: presigned URLs per job, and the files pilots put there.

    [storage] endpoint, bucket, region, credentials (a reference: only the schedd reads it)
        burst submit ──input.stage──▶ presign_put(input key) ──URL──▶ burst submit PUTs
        activation ──────────────────▶ presign_get(input key), presign_put(output keys)
        job.report (stored outputs) ─▶ fetch(output key) into the schedd's own directory,
                                       checking size and sha256; then delete_prefix(run)

    keys  <namespace>/<schedd>/<cluster>/in/<sha256>                  what burst submit put
          <namespace>/<schedd>/<cluster>/<proc>/<claim digest>/<slot>  what one run returned

Nobody but the schedd holds the storage credentials: the CLI and the pilots get
URLs that name one object and one method, and expire ([storage] url_expiry_s).
On the embedded cloud the endpoint is read from run/cloud.json at each use
(it may move when the cloud restarts); the embedded cloud makes the bucket.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config

from services.cloudspec import endpoint as embedded
from services.condor.claims import claim_digest
from services.runtime import credentials
from services.runtime.config import Settings, StorageConfig

CHUNK = 1024 * 1024
OCTET_STREAM = "application/octet-stream"  # presigned PUTs are signed with it (httpfiles.py)
BOTO = Config(signature_version="s3v4", s3={"addressing_style": "path"}, connect_timeout=5,
              read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})


class StorageUnavailable(Exception):
    """The object store cannot be reached now (a transient state: the message is retried)."""


class StorageError(Exception):
    """An object that is not as it should be; str() says why."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code  # S3's error code, when S3 answered with one


class ObjectStore:
    def __init__(self, config: StorageConfig, settings: Settings, schedd: str):
        self.config, self.settings, self.schedd = config, settings, schedd
        self.base_dir = settings.config_path.parent  # file: references are relative to it
        self._clients: dict[str, object] = {}  # endpoint URL -> client

    # --- keys -------------------------------------------------------------------------------

    def cluster_prefix(self, cluster: int) -> str:
        return f"{self.settings.namespace}/{self.schedd}/{cluster}/"

    def input_key(self, cluster: int, sha256: str) -> str:
        return f"{self.cluster_prefix(cluster)}in/{sha256}"

    def run_prefix(self, cluster: int, proc: int, claim_id: str) -> str:
        return f"{self.cluster_prefix(cluster)}{proc}/{claim_digest(claim_id)}/"

    # --- URLs -------------------------------------------------------------------------------

    def presign_put(self, key: str) -> str:
        return self._presign("put_object", {"Bucket": self.config.bucket, "Key": key,
                                            "ContentType": OCTET_STREAM})

    def presign_get(self, key: str, bucket: str | None = None) -> str:
        return self._presign("get_object", {"Bucket": bucket or self.config.bucket, "Key": key})

    def _presign(self, method: str, params: dict) -> str:
        return self._client().generate_presigned_url(
            method, Params=params, ExpiresIn=int(self.config.url_expiry_s))

    # --- objects ----------------------------------------------------------------------------

    def size_of(self, key: str) -> int | None:
        """The object's size, None if there is none."""
        try:
            return int(self._call(lambda c: c.head_object(Bucket=self.config.bucket,
                                                          Key=key))["ContentLength"])
        except StorageError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def fetch(self, key: str, path: Path, *, size: int, sha256: str) -> None:
        """The object into the new file `path` (0600), which must hold `size` bytes with this
        sha256; StorageError (and no file) otherwise."""
        answer = self._call(lambda c: c.get_object(Bucket=self.config.bucket, Key=key))
        if int(answer["ContentLength"]) != size:
            answer["Body"].close()
            raise StorageError(f"{answer['ContentLength']} bytes in storage, {size} reported")
        digest = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in answer["Body"].iter_chunks(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except botocore.exceptions.BotoCoreError as exc:
            path.unlink(missing_ok=True)
            raise StorageUnavailable(f"object storage: {exc}") from None
        if digest.hexdigest() != sha256.lower():
            path.unlink(missing_ok=True)
            raise StorageError(f"sha256 mismatch: reported {sha256.lower()}, storage holds "
                               f"{digest.hexdigest()}")

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; how many there were."""
        deleted = 0
        pages = self._call(lambda c: list(c.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=prefix)))
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:  # a page holds at most 1000 keys: what one DeleteObjects takes
                self._call(lambda c, keys=keys: c.delete_objects(
                    Bucket=self.config.bucket, Delete={"Objects": keys, "Quiet": True}))
                deleted += len(keys)
        return deleted

    # --- the client -------------------------------------------------------------------------

    def _call(self, fn):
        try:
            return fn(self._client())
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code.startswith("5") or code in ("SlowDown", "ServiceUnavailable",
                                                "InternalError"):
                raise StorageUnavailable(f"object storage: {code}") from None
            raise StorageError(f"{code or 'error'}: {error.get('Message', '')}".strip(": "),
                               code) from None
        except botocore.exceptions.BotoCoreError as exc:  # cannot connect, timed out
            self._clients.clear()  # the embedded cloud may be back on another port
            raise StorageUnavailable(f"object storage: {exc}") from None

    def _client(self):
        url = self._endpoint_url()
        client = self._clients.get(url or "")
        if client is None:
            client = self._clients[url or ""] = boto3.client(
                "s3", endpoint_url=url, region_name=self._region(), config=BOTO,
                **self._keys())
        return client

    def _endpoint_url(self) -> str | None:
        where = self.config.endpoint
        if where == embedded.EMBEDDED:
            info = embedded.read_info(self.settings)
            if info is None:
                raise StorageUnavailable(f"the embedded cloud is not running (no "
                                         f"{embedded.info_path(self.settings)}); burst up "
                                         "starts it")
            return info["endpoint"]
        return None if where == "aws" else where

    def _region(self) -> str | None:
        if self.config.region:
            return self.config.region
        return embedded.REGION if self.config.endpoint == embedded.EMBEDDED else None

    def _keys(self) -> dict[str, str]:
        reference = self.config.credentials
        if reference == credentials.NONE:
            return dict(embedded.CREDENTIALS) if self.config.endpoint == embedded.EMBEDDED \
                else {}  # boto3's own chain: AWS_* variables, profiles, an instance role
        try:
            access, secret = credentials.ec2_keys(credentials.resolve(reference,
                                                                       self.base_dir))
        except (credentials.CredentialUnavailable, ValueError) as exc:
            raise StorageUnavailable(f"[storage] credentials {exc}") from None
        return {"aws_access_key_id": access, "aws_secret_access_key": secret}


def open_store(config: StorageConfig, settings: Settings, schedd: str) -> ObjectStore | None:
    return ObjectStore(config, settings, schedd) if config.enabled else None
