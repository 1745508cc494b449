"""Slot ads read without a ClassAd per slot mean what classad2 says they mean."""

from __future__ import annotations

import pytest
from classad2 import ClassAd

from services.negotiator.ads import AdReader
from tests.unit.test_negotiator_logic import job, run, slot

TRICKY = [
    '[ Motd = "closed; see [news]"; Cpus = 4 ]',  # ";" and brackets inside a string
    '[ Quote = "say \\"hi\\"; ok"; Memory = 8000 ]',  # escaped quotes
    '[ Nested = [ a = 1; b = "x;y" ]; Arch = "X86_64" ]',  # a nested ad
    '[ List = { 1, 2, "three;four" }; OpSys = "LINUX" ]',  # a list
    '[ /* spot */ CloudSpot = true; // a comment\n Speed = 3 ]',  # comments
    '[ a = 1; b = a + 1; ]',  # a trailing ";"
    '[\n  Name = "slot1@p";\n  Requirements = TARGET.RequestCpus <= MY.Cpus\n]',
    '[ StartdIpAddr = "<10.0.0.1:9618?addrs=10.0.0.1-9618&alias=x>" ]',  # "=" in a string
]


@pytest.mark.parametrize("text", TRICKY)
def test_attribute_texts_evaluate_as_classad2_reads_the_ad(text):
    shape, values = AdReader().attributes(text)
    read = ClassAd("[" + "; ".join(f"{n} = {v}" for n, v in zip(shape.names, values,
                                                                  strict=True)) + "]")
    original = ClassAd(text)
    assert {n.lower() for n in shape.names} == {n.lower() for n in original}
    for name in original:
        assert str(read.eval(name)) == str(original.eval(name)), name


def test_an_ad_classad2_refuses_is_refused():
    reader = AdReader()
    for text in ["[ Broken = ; ]", "[ Cpus = (1 + ]", "not an ad"]:
        with pytest.raises(Exception, match="ClassAd"):
            shape, values = reader.attributes(text)
            ClassAd("[" + "; ".join(f"{n} = {v}" for n, v in zip(shape.names, values,
                                                                   strict=True)) + "]")


def test_a_slot_written_unusually_matches_like_any_other():
    odd = slot("odd", extra='Motd = "closed; see [news]"; Nested = [ a = 1; b = "x;y" ];')
    plain = slot("plain", site="SiteB")
    result = run([job(idle=8, requirements='TARGET.Nested.b == "x;y"')], [odd, plain])
    assert {c.pilot_id for c in result.matches[("schedd", "1")]} == {"odd"}
