"""Fault settings of the embedded cloud: checked with the entry named, used up as they happen,
and found in the EC2 query parameters that name an entry."""

from __future__ import annotations

import pytest

from services.cloud.faults import FaultBudget, Faults
from services.cloud.server import entry_named
from services.runtime.config import ConfigError, EntryConfig


def entry(**faults) -> EntryConfig:
    return EntryConfig(name="e1", site="S", driver="ec2", endpoint="embedded", faults=faults)


@pytest.mark.parametrize(("faults", "message"), [
    ({"throttel": 1}, "entry e1: faults.throttel: unknown; known: launch_errors, throttle"),
    ({"throttle": "2"}, "entry e1: faults.throttle: expected int, got '2'"),
    ({"never_boot": True}, "entry e1: faults.never_boot: expected int, got True"),
    ({"launch_error": 5}, "entry e1: faults.launch_error: expected str"),
])
def test_bad_faults_are_named(faults, message):
    with pytest.raises(ConfigError, match=message):
        Faults.of(entry(**faults))


def test_faults_are_used_up():
    budget = FaultBudget([entry(throttle=2, vanish_after_s=3)])
    assert [budget.take("e1", "throttle") for _ in range(3)] == [True, True, False]
    assert not budget.take("e1", "vanish") and not budget.take("other", "throttle")
    assert budget.of("e1").vanish_after_s == 3 and budget.of("other") == Faults()


def test_the_entry_a_request_names():
    run = {"Action": "RunInstances", "TagSpecification.1.Tag.3.Key": "burst:entry",
           "TagSpecification.1.Tag.3.Value": "e1"}
    describe = {"Action": "DescribeInstances", "Filter.1.Name": "tag:burst:pool",
                "Filter.1.Value.1": "pool", "Filter.2.Name": "tag:burst:entry",
                "Filter.2.Value.1": "e2"}
    assert (entry_named(run), entry_named(describe)) == ("e1", "e2")
    assert entry_named({"Action": "DescribeInstances", "Filter.1.Name": "tag:burst:pilot-id",
                        "Filter.1.Value.1": "p1"}) == ""
