"""The partitionable slot: carving claims, its ClassAd, and when a pilot retires."""

from __future__ import annotations

import classad2
import pytest

from schemas.slot import ClaimActivate
from services.condor.pilot import PilotContext
from services.condor.slot import Resources, arch, matches, slot_ad
from services.glidein import logic
from services.glidein.logic import PartitionableSlot, SlotError

CTX = PilotContext(pilot_id="pilot-7", entry="aws_east", site="AWS-US-East", factory="fac1",
                   provider="aws", cpus=4, memory_mb=8000, disk_mb=20000, instance_id="i-0abc",
                   instance_type="m5.xlarge", spot=True, group="main",
                   attributes={"HasDocker": True, "Flavor": "big"})


def test_four_cpus_make_four_one_cpu_claims_and_no_fifth():
    slot = PartitionableSlot.for_context(CTX)
    for n in range(4):
        slot.claim(f"c{n}", 1, 1000, 1000)
    assert slot.free == Resources(0, 4000, 16000) and slot.busy
    assert slot.why_not(1, 1, 1) is not None
    with pytest.raises(SlotError, match="does not fit in the free 0 cpus"):
        slot.claim("c4", 1, 1000, 1000)
    assert slot.release("c2") == Resources(1, 1000, 1000)
    slot.claim("c4", 1, 1000, 1000)
    assert sorted(slot.claims) == ["c0", "c1", "c3", "c4"]


def test_memory_and_disk_limit_claims_too():
    slot = PartitionableSlot(Resources(4, 1000, 1000))
    assert slot.why_not(1, 2000, 10) == (
        "request of 1 cpus, 2000 MiB memory, 10 MB disk does not fit in the free "
        "4 cpus, 1000 MiB memory, 1000 MB disk")
    assert slot.why_not(1, 10, 1001) is not None
    assert slot.why_not(0, 10, 10) is not None  # a job takes at least one core
    assert slot.why_not(4, 1000, 1000) is None
    with pytest.raises(SlotError, match="already active"):
        slot.claim("a", 1, 1, 1)
        slot.claim("a", 1, 1, 1)


def test_slot_ad_carries_glidein_and_cloud_attributes():
    ad = slot_ad(CTX, Resources(3, 6000, 15000), host="node1", started_at=1000.0)
    assert ad["Name"] == "slot1@pilot-7" and ad["Machine"] == "node1"
    assert (ad["Cpus"], ad["Memory"], ad["Disk"]) == (3, 6000, 15000 * 1024)
    assert (ad["TotalCpus"], ad["TotalMemory"], ad["TotalDisk"]) == (4, 8000, 20000 * 1024)
    assert ad["PartitionableSlot"] is True and ad["IsGlidein"] is True
    assert ad["GLIDEIN_Site"] == "AWS-US-East" and ad["GLIDEIN_Entry_Name"] == "aws_east"
    assert ad["GLIDEIN_Factory"] == "fac1" and ad["GLIDECLIENT_Group"] == "main"
    assert ad["GLIDEIN_ToDie"] == 1000 + 86400
    assert ad["CloudProvider"] == "aws" and ad["CloudInstanceID"] == "i-0abc"
    assert ad["CloudInstanceType"] == "m5.xlarge" and ad["CloudSpot"] is True
    assert ad["PilotId"] == "pilot-7" and ad["OpSys"] == "LINUX" and ad["Arch"] == arch()
    assert ad["HasDocker"] is True and ad["Flavor"] == "big"
    # The text round-trips: that is what travels in slot.advertised.
    assert classad2.ClassAd(str(ad))["GLIDEIN_Site"] == "AWS-US-East"


def test_context_attributes_cannot_override_the_pilots_own():
    ctx = PilotContext(pilot_id="p", cpus=2, attributes={"Cpus": 64, "GLIDEIN_Site": "fake"},
                       site="real")
    ad = slot_ad(ctx, Resources(2, 100, 100))
    assert ad["Cpus"] == 2 and ad["GLIDEIN_Site"] == "real"


@pytest.mark.parametrize(("job", "fits"), [
    ("[ RequestCpus = 2; RequestMemory = 2000; RequestDisk = 1024; Requirements = true ]", True),
    ("[ RequestCpus = 3; RequestMemory = 6000; RequestDisk = 15360000 ]", True),
    ("[ RequestCpus = 4; RequestMemory = 100 ]", False),  # more cpus than are free
    ("[ RequestCpus = 1; RequestMemory = 6001 ]", False),
    ("[ RequestCpus = 1; RequestDisk = 15360001 ]", False),  # KiB, as HTCondor
    ("[ Requirements = true ]", True),  # no requests at all: one core, no memory or disk
    ('[ RequestCpus = "many" ]', False),  # an error is no match, never a truthy int
])
def test_requirements_accept_fitting_jobs_and_reject_oversized_ones(job, fits):
    slot = slot_ad(CTX, Resources(3, 6000, 15000))
    job_ad = classad2.ClassAd(job)
    assert matches(slot, job_ad) is fits
    assert job_ad.matches(slot) is fits  # classad2: evaluates the slot's Requirements


def test_job_requirements_on_glidein_attributes_match_symmetrically():
    slot = slot_ad(CTX, Resources(1, 1000, 1000))
    job = classad2.ClassAd('[ RequestCpus = 1; RequestMemory = 100; '
                           'Requirements = TARGET.GLIDEIN_Site == "AWS-US-East" '
                           '&& TARGET.CloudSpot ]')
    assert job.symmetricMatch(slot)
    other = classad2.ClassAd('[ RequestCpus = 1; Requirements = TARGET.GLIDEIN_Site == "X" ]')
    assert not other.symmetricMatch(slot)


def test_arch_names():
    assert arch("x86_64") == "X86_64" and arch("AMD64") == "X86_64"
    assert arch("aarch64") == "aarch64"


def test_retire_policy():
    base = {"started_at": 0.0, "idle_timeout_s": 20.0, "max_lifetime_s": 100.0}
    assert logic.why_retire(now=10, idle_since=0, busy=False, **base) is None
    assert logic.why_retire(now=21, idle_since=0, busy=False, **base) == "idle for 21 s"
    assert logic.why_retire(now=50, idle_since=0, busy=True, **base) is None
    assert logic.why_retire(now=50, idle_since=40, busy=False, **base) is None
    assert logic.why_retire(now=100, idle_since=90, busy=True, **base) == "lifetime reached"
    assert not logic.may_retire_on_request(only_if_idle=True, busy=True)
    assert logic.may_retire_on_request(only_if_idle=False, busy=True)
    assert logic.may_retire_on_request(only_if_idle=True, busy=False)


def test_claim_refusals():
    slot = PartitionableSlot(Resources(2, 1000, 1000))

    def why(pilot_id="pilot-7", cpus=1, retire_reason="", shutting_down=False):
        msg = ClaimActivate(claim_id="c1", pilot_id=pilot_id, schedd="s", job_id="1.0",
                            job_ad="[]", executable="x", arguments=[], environment={}, files={},
                            cpus=cpus, memory_mb=100, disk_mb=10)
        return logic.why_refuse_claim(msg, pilot_id="pilot-7", slot=slot,
                                      retire_reason=retire_reason, shutting_down=shutting_down)

    assert why() is None
    assert why(pilot_id="pilot-8") == "claim is for pilot pilot-8, this is pilot-7"
    assert why(shutting_down=True, retire_reason="idle") == "pilot is shutting down"
    assert why(retire_reason="lifetime reached") == "pilot is retiring (lifetime reached)"
    assert why(cpus=3).startswith("request of 3 cpus, 100 MiB memory, 10 MB disk does not fit")


# --- custom resources ------------------------------------------------------------------------

GPU_CTX = PilotContext(pilot_id="g1", cpus=4, memory_mb=8000, disk_mb=1000,
                       resources={"GPUs": 2, "Boats": 1},
                       attributes={"Boats": 99, "TotalGPUs": 99, "HasCuda": True})


def test_custom_resources_are_handed_out_per_claim_like_cpus():
    slot = PartitionableSlot.for_context(GPU_CTX)
    assert slot.claim("c1", 1, 100, 10, {"GPUs": 1}) == Resources(1, 100, 10, {"GPUs": 1})
    slot.claim("c2", 1, 100, 10, {"gpus": 1, "boats": 1})  # ClassAd names: any case
    assert slot.free == Resources(2, 7800, 980, {"GPUs": 0, "Boats": 0})
    assert slot.why_not(1, 100, 10, {"GPUs": 1}) == (
        "request of 1 cpus, 100 MiB memory, 10 MB disk, 1 GPUs does not fit in the free "
        "2 cpus, 7800 MiB memory, 980 MB disk, 0 GPUs, 0 Boats")
    assert slot.why_not(1, 100, 10, {"GPUs": -1}).startswith("bad request")
    # a resource the pilot does not define is not its to hand out (HTCondor's startd too)
    assert slot.why_not(1, 100, 10, {"Wings": 3}) is None
    slot.release("c1")
    assert slot.free.custom == {"GPUs": 1, "Boats": 0}


def test_the_slot_ad_advertises_custom_resources_as_htcondor_does():
    ad = slot_ad(GPU_CTX, Resources(4, 8000, 1000, {"GPUs": 1, "Boats": 1}))
    assert (ad["GPUs"], ad["TotalGPUs"], ad["TotalSlotGPUs"], ad["DetectedGPUs"]) == (1, 2, 2, 2)
    assert (ad["Boats"], ad["TotalBoats"]) == (1, 1)  # the context cannot say otherwise
    assert ad["HasCuda"] is True
    assert ad["MachineResources"] == "Cpus Memory Disk GPUs Boats"
    wants = classad2.ClassAd("[ RequestCpus = 1; RequestGPUs = 1; "
                             "Requirements = TARGET.GPUs >= MY.RequestGPUs ]")
    assert matches(ad, wants) and wants.symmetricMatch(ad)
    greedy = classad2.ClassAd("[ RequestCpus = 1; RequestGPUs = 2; Requirements = true ]")
    assert not matches(ad, greedy)  # the slot's own side: no more than is free


def test_a_claim_for_what_the_slot_lacks_is_refused():
    slot = PartitionableSlot.for_context(GPU_CTX)
    msg = ClaimActivate(claim_id="c1", pilot_id="g1", schedd="s", job_id="1.0", job_ad="[]",
                        executable="x", arguments=[], environment={}, files={}, cpus=1,
                        memory_mb=100, disk_mb=10, resources={"GPUs": 3})
    assert logic.why_refuse_claim(msg, pilot_id="g1", slot=slot, retire_reason="",
                                  shutting_down=False) == (
        "request of 1 cpus, 100 MiB memory, 10 MB disk, 3 GPUs does not fit in the free "
        "4 cpus, 8000 MiB memory, 1000 MB disk, 2 GPUs, 1 Boats")
