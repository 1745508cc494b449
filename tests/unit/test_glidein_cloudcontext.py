"""The glidein's cloud context sources: IMDSv2, IMDSv1, config drive, context disk, in order.

The metadata service is the embedded cloud's (services/cloud/imds.py) on a free port; config
drives and context disks are written here by hand, in the middlewares' own layouts."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request

import pytest

from services.cloud.imds import Metadata, MetadataService
from services.cloudspec.profiles import PROFILES
from services.glidein import __main__ as glidein_main
from services.glidein.cloudcontext import parse_context_sh
from services.glidein.context import ContextError, load

USER_DATA = {"BURST_PILOT_ID": "p-7", "BURST_ENTRY": "cloud1", "BURST_SITE": "CloudSite",
             "BURST_PROVIDER": "aws", "BURST_CPUS": "2", "BURST_INSTANCE_ID": "i-hoped",
             "BURST_INSTANCE_TYPE": "hoped.large", "BURST_NAMESPACE": "pool1"}
META = {"instance-id": "i-0123456789abcdef0", "instance-type": "t3.small",
        "placement/availability-zone": "us-east-1a", "instance-life-cycle": "spot"}


@pytest.fixture
def imds():
    service = MetadataService()
    service.start()
    yield service
    service.stop()


def serve(imds: MetadataService, profile: str, user_data=USER_DATA, meta=None) -> str:
    meta = dict(META if meta is None else meta)
    if PROFILES[profile].partition:
        meta["services/partition"] = PROFILES[profile].partition
    imds.publish(Metadata(meta["instance-id"], PROFILES[profile],
                          json.dumps(user_data).encode(), meta,
                          {"uuid": meta["instance-id"], "name": "p-7"}))
    return imds.base_url(meta["instance-id"])


def http(url: str, method: str = "GET", **headers: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method,
                                                           headers=headers)) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/i-x"


def test_imdsv2_gives_the_context_and_the_cloud_has_the_last_word(imds):
    ctx = load(env={"BURST_IMDS_ENDPOINT": serve(imds, "aws"), "BURST_CPUS": "8"})
    assert (ctx.pilot_id, ctx.entry, ctx.site, ctx.cpus, ctx.namespace) == (
        "p-7", "cloud1", "CloudSite", 2, "pool1")  # user data beats the environment
    assert (ctx.provider, ctx.instance_id, ctx.instance_type, ctx.spot) == (
        "aws", "i-0123456789abcdef0", "t3.small", True)  # not what the factory hoped
    assert ctx.source == "imds-v2"


def test_aws_metadata_refuses_requests_without_a_token_of_that_vm(imds):
    base = serve(imds, "aws")
    other = serve(imds, "aws", meta={**META, "instance-id": "i-other"})
    assert http(f"{base}/latest/user-data")[0] == 401
    assert http(f"{base}/latest/api/token", "PUT")[0] == 400  # the TTL header is required
    status, token = http(f"{other}/latest/api/token", "PUT",
                         **{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200
    assert http(f"{base}/latest/user-data", **{"X-aws-ec2-metadata-token": token.decode()}
                )[0] == 401  # another VM's token
    assert http(f"{other}/latest/meta-data/placement/availability-zone",
                **{"X-aws-ec2-metadata-token": token.decode()}) == (200, b"us-east-1a")
    imds.tokens[token.decode()] = ("i-other", 0.0)  # expired
    assert http(f"{other}/latest/user-data",
                **{"X-aws-ec2-metadata-token": token.decode()})[0] == 401


def test_eucalyptus_is_imdsv1(imds):
    base = serve(imds, "eucalyptus", meta={k: v for k, v in META.items()
                                           if k != "instance-life-cycle"})
    assert http(f"{base}/latest/api/token", "PUT",
                **{"X-aws-ec2-metadata-token-ttl-seconds": "60"})[0] == 404
    assert http(f"{base}/latest/meta-data/")[1].split() == [
        b"instance-id", b"instance-type", b"placement/"]
    ctx = load(env={"BURST_IMDS_ENDPOINT": base})
    assert (ctx.source, ctx.provider, ctx.instance_id, ctx.spot) == (
        "imds-v1", "eucalyptus", "i-0123456789abcdef0", False)


def test_openstack_metadata_is_imdsv1_that_also_serves_openstack_paths(imds):
    ctx = load(env={"BURST_IMDS_ENDPOINT": serve(imds, "openstack")})
    assert (ctx.source, ctx.provider) == ("imds-v1", "openstack")


def write_config_drive(root, user_data=USER_DATA):
    (root / "openstack" / "latest").mkdir(parents=True)
    (root / "openstack" / "latest" / "user_data").write_text(json.dumps(user_data))
    (root / "openstack" / "latest" / "meta_data.json").write_text(json.dumps(
        {"uuid": "6d4d0f2c-0000-4000-8000-1c2b3a4d5e6f", "name": "p-7",
         "availability_zone": "nova"}))
    (root / "ec2" / "latest").mkdir(parents=True)
    (root / "ec2" / "latest" / "meta-data.json").write_text(json.dumps(
        {"instance-id": "i-00000042", "instance-type": "m1.small"}))
    return root


def test_a_config_drive(tmp_path):
    drive = write_config_drive(tmp_path / "config-2")
    ctx = load(env={"BURST_CONFIG_DRIVE": str(drive)})
    assert (ctx.source, ctx.provider, ctx.pilot_id, ctx.instance_id, ctx.instance_type) == (
        "config-drive", "openstack", "p-7", "i-00000042", "m1.small")
    (drive / "ec2" / "latest" / "meta-data.json").unlink()  # older drives: nova's uuid
    assert load(env={"BURST_CONFIG_DRIVE": str(drive)}).instance_id == \
        "6d4d0f2c-0000-4000-8000-1c2b3a4d5e6f"


def write_context_disk(root, user_data=USER_DATA, encoding="base64"):
    root.mkdir(parents=True)
    text = json.dumps(user_data)
    value = base64.b64encode(text.encode()).decode() if encoding else text.replace("'", "'\\''")
    (root / "context.sh").write_text(
        "# Context variables generated by OpenNebula\n"
        "DISK_ID='1'\nETH0_IP='10.0.0.5'\nNETWORK='YES'\nVMID='i-0000007b'\n"
        "SSH_PUBLIC_KEY='ssh-ed25519 AAAA user@host'\nTARGET='hdc'\n"
        f"USER_DATA='{value}'\n" + (f"USERDATA_ENCODING='{encoding}'\n" if encoding else ""))
    return root


def test_a_context_disk(tmp_path):
    disk = write_context_disk(tmp_path / "context")
    ctx = load(env={"BURST_CONTEXT_DISK": str(disk)})
    assert (ctx.source, ctx.provider, ctx.pilot_id, ctx.instance_id, ctx.spot) == (
        "context-disk", "opennebula", "p-7", "i-0000007b", False)
    plain = write_context_disk(tmp_path / "plain", {**USER_DATA, "BURST_SITE": "O'Neill"},
                               encoding="")
    assert load(env={"BURST_CONTEXT_DISK": str(plain)}).site == "O'Neill"


def test_context_sh_is_read_as_the_shell_reads_it():
    text = "# c\nA='x y'\nB=\"two words\"\nC='it'\\''s'\nexport D=plain\nBROKEN='open\n"
    assert parse_context_sh(text) == {"A": "x y", "B": "two words", "C": "it's", "D": "plain"}


def test_the_first_source_in_order_wins_and_a_dead_one_is_skipped(imds, tmp_path):
    disk = write_context_disk(tmp_path / "context", {**USER_DATA, "BURST_PILOT_ID": "p-disk"})
    both = {"BURST_IMDS_ENDPOINT": serve(imds, "aws"), "BURST_CONTEXT_DISK": str(disk)}
    assert load(env=both).pilot_id == "p-7"
    dead = {**both, "BURST_IMDS_ENDPOINT": closed_port_url()}
    assert (load(env=dead).pilot_id, load(env=dead).source) == ("p-disk", "context-disk")


def test_no_usable_context_names_every_source_tried(tmp_path):
    env = {"BURST_IMDS_ENDPOINT": closed_port_url(),
           "BURST_CONFIG_DRIVE": str(tmp_path / "no-drive"),
           "BURST_CONTEXT_DISK": str(tmp_path / "no-disk")}
    with pytest.raises(ContextError) as err:
        load(env=env)
    message = str(err.value)
    assert message.startswith("no usable context: IMDSv2 at ")
    for part in ("IMDSv1 at", "config drive", "context disk", "no answer", "cannot read"):
        assert part in message


def test_a_pilot_with_no_context_exits_2_with_one_line(monkeypatch, capsys, tmp_path):
    for var in ("BURST_PILOT_ID", "BURST_IMDS_ENDPOINT", "BURST_CONFIG_DRIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BURST_CONTEXT_DISK", str(tmp_path / "absent"))
    assert glidein_main.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("burst glidein: bad pilot context: no usable")
    monkeypatch.delenv("BURST_CONTEXT_DISK")
    assert glidein_main.main([]) == 2
    assert "BURST_IMDS_ENDPOINT" in capsys.readouterr().err  # says where a VM would look


@pytest.mark.parametrize(("user_data", "message"), [
    (b"#!/bin/sh\necho hi", "imds-v1 user data: expected a JSON object of BURST_* variables"),
    (json.dumps({"BURST_PILOT_ID": "p", "BURST_CPU": "2"}).encode(),
     "imds-v1 user data: BURST_CPU: unknown variable"),
    (json.dumps({"BURST_PILOT_ID": "p", "BURST_CPUS": "lots"}).encode(),
     "imds-v1 user data: BURST_CPUS: expected a positive integer"),
])
def test_bad_user_data_is_named(imds, user_data, message):
    imds.publish(Metadata("i-bad", PROFILES["eucalyptus"], user_data,
                          {"instance-id": "i-bad"}, {}))
    with pytest.raises(ContextError, match=message.replace("*", r"\*")):
        load(env={"BURST_IMDS_ENDPOINT": imds.base_url("i-bad")})
