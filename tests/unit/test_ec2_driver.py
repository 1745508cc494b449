"""The ec2 driver against moto in-process: tags, user data, pagination, retries, idempotency,
batched terminations. Every test gets its own pool (namespace), and the driver only ever
sees its own pool's VMs, so one moto serves the module."""

from __future__ import annotations

import base64
import json
import uuid

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws
from prometheus_client import REGISTRY

from services.factory.drivers import LaunchSpec, make_driver
from services.factory.drivers.cloudcalls import CloudError, RetryPolicy, TokenBucket
from services.factory.drivers.ec2 import EC2Driver, client_token
from services.glidein.cloudcontext import context_from_user_data
from services.runtime import bootstrap
from services.runtime.config import EntryConfig, Settings

FAST = RetryPolicy(attempts=4, base_s=0.001, cap_s=0.01)


@pytest.fixture(scope="module")
def ec2():
    with mock_aws():
        client = boto3.client("ec2", region_name="us-east-1")
        client.create_security_group(GroupName="burst-pilots", Description="pilots")
        yield client


@pytest.fixture
def pool(tmp_path):
    return Settings.from_env({"BURST_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
                              "BURST_STATE_DIR": str(tmp_path)})


def entry(name="cloud1", provider="aws", **fields) -> EntryConfig:
    return EntryConfig(name=name, site="Cloud", driver="ec2", provider=provider,
                       region="us-east-1", image="ami-12345678", instance_type="t3.small",
                       **fields)


def driver(ec2, pool, config=None, **kw) -> EC2Driver:
    events = []
    made = EC2Driver(config or entry(), pool, emit=events.append, client=ec2,
                     retry=kw.pop("retry", FAST), **kw)
    made.events = events
    return made


POOL_KEY = bytes(range(32))
METADATA_URL = "http://metadata.example:8471"


def spec(pilot_id="p1", entry_name="cloud1", credential=b"") -> LaunchSpec:
    context = {"BURST_PILOT_ID": pilot_id, "BURST_ENTRY": entry_name, "BURST_CPUS": "2",
               "BURST_PROVIDER": "aws", "AMQP_URL": "amqp://guest:guest@broker:5672/%2F"}
    token = bootstrap.issue(POOL_KEY, pool="t", entry=entry_name, pilot_id=pilot_id,
                            factory="factory-a", group="fe.main")
    return LaunchSpec(pilot_id, entry_name, "fe.main", context, factory="factory-a",
                      pilot_key=b"k" * 32, boot_token=token, metadata_url=METADATA_URL,
                      credential=credential)


def vms_of(ec2, pool, pilot_id=None) -> list[dict]:
    filters = [{"Name": "tag:burst:pool", "Values": [pool.namespace]}]
    if pilot_id:
        filters.append({"Name": "tag:burst:pilot-id", "Values": [pilot_id]})
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"]
            for i in r["Instances"]]


def calls(call: str, outcome: str = "ok") -> float:
    return REGISTRY.get_sample_value("burst_cloud_calls_total",
                                     {"call": call, "outcome": outcome}) or 0.0


@pytest.fixture
def hook(ec2):
    """Register a botocore event handler on the shared client for one test."""
    registered = []

    def register(event: str, handler, first: bool = False):
        (ec2.meta.events.register_first if first else ec2.meta.events.register)(event, handler)
        registered.append((event, handler))

    yield register
    for event, handler in registered:
        ec2.meta.events.unregister(event, handler)


@pytest.fixture
def fail_first(hook):
    """Answer the first `times` calls with a cloud error, through botocore's event system."""

    def inject(call: str, times: int, code: str, status: int) -> list:
        seen = []

        def answer(**_kwargs):
            seen.append(call)
            if len(seen) <= times:
                return AWSResponse("http://cloud", status, {}, None), {
                    "Error": {"Code": code, "Message": f"injected {code}"},
                    "ResponseMetadata": {"HTTPStatusCode": status}}
            return None

        hook(f"before-call.ec2.{call}", answer, first=True)
        return seen

    return inject


def test_a_launch_tags_the_vm_and_asks_for_what_the_entry_says(ec2, pool):
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    d = driver(ec2, pool, entry(key_name="pilots-key", security_groups=["burst-pilots"],
                                subnet_id=subnet))
    instance = d.launch(spec())
    [vm] = vms_of(ec2, pool)
    assert vm["InstanceId"] == instance.instance_id and instance.state == "running"
    tags = {t["Key"]: t["Value"] for t in vm["Tags"]}
    assert tags == {"burst:pool": pool.namespace, "burst:entry": "cloud1",
                    "burst:factory": "factory-a", "burst:group": "fe.main",
                    "burst:pilot-id": "p1", "Name": "p1"}
    assert (vm["ImageId"], vm["InstanceType"], vm["KeyName"], vm["SubnetId"]) == (
        "ami-12345678", "t3.small", "pilots-key", subnet)
    assert [g["GroupName"] for g in vm["SecurityGroups"]] == ["burst-pilots"]
    flag = ec2.describe_instance_attribute(InstanceId=vm["InstanceId"],
                                           Attribute="instanceInitiatedShutdownBehavior")
    assert flag["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    assert d.run_params(spec())["ClientToken"] == client_token(pool.namespace, "p1")
    assert len(client_token(pool.namespace, "x" * 200)) <= 64


def test_opennebula_is_not_sent_a_shutdown_flag_it_does_not_know(ec2, pool):
    d = driver(ec2, pool, entry(provider="opennebula"))
    assert "InstanceInitiatedShutdownBehavior" not in d.run_params(spec())
    assert driver(ec2, pool, entry(provider="openstack")).run_params(spec())[
        "InstanceInitiatedShutdownBehavior"] == "terminate"  # accepted there, then ignored


def test_user_data_holds_only_a_boot_token_and_where_to_exchange_it(ec2, pool):
    d = driver(ec2, pool)
    launched = spec(credential=b"AKIAPLANTED:planted-secret")
    instance = d.launch(launched)
    answer = ec2.describe_instance_attribute(InstanceId=instance.instance_id,
                                             Attribute="userData")
    user_data = base64.b64decode(answer["UserData"]["Value"])
    assert json.loads(user_data) == {"BURST_BOOT_TOKEN": launched.boot_token,
                                     "BURST_METADATA_URL": METADATA_URL}
    for secret in (b"amqp", b"guest", b"planted", launched.pilot_key.hex().encode()):
        assert secret not in user_data
    parsed = context_from_user_data(user_data, "user data")
    assert {k: raw.value for k, raw in parsed.items()} == {
        "BURST_BOOT_TOKEN": launched.boot_token, "BURST_METADATA_URL": METADATA_URL}
    with pytest.raises(ValueError, match="needs a boot token"):
        d.run_params(LaunchSpec("p2", "cloud1", "fe.main"))


def test_each_account_launches_lists_and_terminates_with_its_own_keys(ec2, pool):
    d = EC2Driver(entry(credential="ec2-keypair"), pool, retry=FAST)  # a client per account
    with pytest.raises(CloudError, match="needs a ec2-keypair credential"):
        d.launch(spec())
    assert d.blind and d.instances("cloud1") == []  # no account yet: nothing to look with
    assert not driver(ec2, pool).blind  # credential = "none": boto3's own chain
    with pytest.raises(CloudError, match="ACCESS_KEY_ID:SECRET_ACCESS_KEY"):
        d.launch(spec(credential=b"no-colon-here"))
    assert d.credential_arrived(b"AKIAONE:secret-one")
    assert not d.credential_arrived(b"AKIAONE:secret-one") and not d.blind
    assert d.credential_arrived(b'{"access_key_id": "AKIATWO", "secret_access_key": "s2"}')
    signed = []
    for account in ("AKIAONE", "AKIATWO"):
        d.calls(account).client.meta.events.register(
            "before-send.ec2", lambda request, **_: signed.append(
                request.headers["Authorization"].decode().split("Credential=")[1][:7]))
    d.launch(spec("p1", credential=b"AKIAONE:secret-one"))
    d.launch(spec("p2", credential=b"AKIATWO:s2"))
    assert {i.pilot_id for i in d.instances("cloud1")} == {"p1", "p2"}
    d.terminate("p2")
    d.flush()
    assert signed[-1] == "AKIATWO" and {"AKIAONE", "AKIATWO"} <= set(signed)
    assert [vm["State"]["Name"] for vm in vms_of(ec2, pool, "p2")] == ["terminated"]


def test_instances_pages_through_one_entry_and_never_lists_another(ec2, pool):
    d = driver(ec2, pool, page_size=5)
    other = driver(ec2, pool, entry(name="cloud2"), page_size=5)
    for n in range(12):
        d.launch(spec(f"p{n}"))
    other.launch(spec("q0", entry_name="cloud2"))
    before = calls("DescribeInstances")
    listed = driver(ec2, pool, page_size=5).instances("cloud1")  # a restarted factory
    assert sorted(i.pilot_id for i in listed) == sorted(f"p{n}" for n in range(12))
    assert {i.state for i in listed} == {"running"} and {i.group for i in listed} == {"fe.main"}
    assert calls("DescribeInstances") - before == 3  # 12 VMs in pages of 5


def test_states_the_factory_sees(ec2, pool):
    d = driver(ec2, pool)
    a, b, c = (d.launch(spec(p)) for p in ("pa", "pb", "pc"))
    ec2.stop_instances(InstanceIds=[b.instance_id])  # an OpenStack guest that shut down
    ec2.terminate_instances(InstanceIds=[c.instance_id])
    states = {i.pilot_id: i.state for i in driver(ec2, pool).instances("cloud1")}
    assert states == {"pa": "running", "pb": "stopped"}  # terminated ones are not listed
    # AWS lists a new VM only "eventually": its launcher counts it for a while regardless.
    assert {i.pilot_id for i in d.instances("cloud1")} == {"pa", "pb", "pc"}
    assert {i.pilot_id for i in driver(ec2, pool, listing_lag_s=0.0).instances("cloud1")} == {
        "pa", "pb"}


def test_throttling_is_retried_with_events_and_counted(ec2, pool, fail_first):
    d = driver(ec2, pool)
    seen = fail_first("RunInstances", 2, "RequestLimitExceeded", 503)
    throttled = calls("RunInstances", "throttled")
    instance = d.launch(spec())
    assert len(seen) == 3 and [vm["InstanceId"] for vm in vms_of(ec2, pool)] == [
        instance.instance_id]
    assert calls("RunInstances", "throttled") - throttled == 2
    assert [(e.call, e.code, e.attempt, e.will_retry, e.entry) for e in d.events] == [
        ("RunInstances", "RequestLimitExceeded", 1, True, "cloud1"),
        ("RunInstances", "RequestLimitExceeded", 2, True, "cloud1")]


@pytest.mark.parametrize(("code", "status"), [("InsufficientInstanceCapacity", 500),
                                              ("InternalError", 500), ("Unavailable", 503)])
def test_capacity_and_server_errors_are_retried(ec2, pool, fail_first, code, status):
    fail_first("RunInstances", 1, code, status)
    d = driver(ec2, pool)
    d.launch(spec())
    assert len(vms_of(ec2, pool)) == 1 and d.events[0].code == code


def test_a_permanent_error_is_not_retried_and_is_reported(ec2, pool, fail_first):
    seen = fail_first("RunInstances", 9, "InvalidAMIID.NotFound", 400)
    d = driver(ec2, pool)
    with pytest.raises(CloudError, match="InvalidAMIID.NotFound"):
        d.launch(spec())
    assert len(seen) == 1 and vms_of(ec2, pool) == []
    assert [(e.code, e.will_retry) for e in d.events] == [("InvalidAMIID.NotFound", False)]


def test_retries_give_up_after_the_policy_attempts(ec2, pool, fail_first):
    seen = fail_first("RunInstances", 99, "RequestLimitExceeded", 503)
    d = driver(ec2, pool)
    with pytest.raises(CloudError):
        d.launch(spec())
    assert len(seen) == FAST.attempts
    assert [e.will_retry for e in d.events] == [True] * (FAST.attempts - 1) + [False]


def test_a_lost_answer_to_run_instances_does_not_make_a_second_vm(ec2, pool, hook):
    lost = []

    def drop_answer(**_kwargs):  # the VM is made, its answer never arrives
        if not lost:
            lost.append(1)
            raise ReadTimeoutError(endpoint_url="http://cloud")

    hook("after-call.ec2.RunInstances", drop_answer)
    instance = driver(ec2, pool).launch(spec())
    assert lost and [vm["InstanceId"] for vm in vms_of(ec2, pool, "p1")] == [
        instance.instance_id]


def test_launching_a_pilot_again_returns_its_vm(ec2, pool):
    first = driver(ec2, pool).launch(spec())
    again = driver(ec2, pool).launch(spec())  # a factory that restarted and asks again
    assert again.instance_id == first.instance_id and len(vms_of(ec2, pool)) == 1


def test_terminations_are_batched(ec2, pool, hook):
    d = driver(ec2, pool, terminate_batch=2)
    launched = [d.launch(spec(f"p{n}")) for n in range(5)]
    sent = []
    hook("before-call.ec2.TerminateInstances", lambda params, **_: sent.append(params["body"]))
    for instance in launched:
        d.terminate(instance.pilot_id)
    assert {vm["State"]["Name"] for vm in vms_of(ec2, pool)} == {"running"}  # not before flush
    d.flush()
    assert [len([k for k in body if k.startswith("InstanceId.")]) for body in sent] == [2, 2, 1]
    assert {vm["State"]["Name"] for vm in vms_of(ec2, pool)} == {"terminated"}
    d.flush()
    assert len(sent) == 3  # nothing left to send


def test_terminate_finds_vms_another_factory_launched_and_skips_forgotten_ones(ec2, pool):
    launched = driver(ec2, pool).launch(spec("p1"))
    gone = driver(ec2, pool).launch(spec("p2"))
    ec2.terminate_instances(InstanceIds=[gone.instance_id])
    d = driver(ec2, pool)
    d.terminate("p1")
    d.terminate("p2")
    d.terminate("never-launched")
    d.flush()
    assert [vm["State"]["Name"] for vm in vms_of(ec2, pool, "p1")] == ["terminated"]
    assert launched.pilot_id == "p1" and d.events == []


def test_make_driver_builds_an_ec2_driver_and_checks_the_entry(pool):
    made = make_driver("ec2", pool, entry(endpoint="embedded"))
    assert isinstance(made, EC2Driver) and made.endpoint_url == "embedded"  # cloud not running
    with pytest.raises(ValueError, match="needs image and instance_type"):
        make_driver("ec2", pool, EntryConfig(name="x", site="S", driver="ec2", provider="aws"))
    with pytest.raises(CloudError, match="start the embedded cloud"):
        made.instances("cloud1")


def test_the_token_bucket_paces_calls():
    now, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate_per_s=5.0, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(12):
        bucket.acquire()
    assert now[0] == pytest.approx(10 / 5.0)  # 2 at once, then 5 a second
