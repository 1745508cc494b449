"""What the schema codec accepts and refuses, and how it says so."""

from __future__ import annotations

import msgpack
import pytest

import schemas
from schemas import SchemaError
from schemas.job import JobSubmit, ProcAd
from schemas.provisioning import GlideinRequest

REQUEST = {"frontend": "f", "group": "g", "entry": "e", "idle_target": 1, "max_glideins": 2,
           "remove_excess": "NO"}


def _decode(name: str, version: int, fields: dict) -> object:
    return schemas.decode(name, version, msgpack.packb(fields, use_bin_type=True))


def test_a_message_comes_back_equal_through_its_body():
    sent = JobSubmit(cluster=4, owner="ann", submit_file="a.sub",
                     procs=[ProcAd(proc=0, ad="[ A = 1 ]"), ProcAd(proc=1, ad="[ A = 2 ]")])
    assert schemas.decode("job.submit", 1, schemas.encode(sent)) == sent
    assert msgpack.unpackb(schemas.encode(sent)) == schemas.to_plain(sent)


def test_keys_the_schema_does_not_know_are_skipped():
    # A newer producer may have added optional fields.
    msg = _decode("glidein.request", 2, {**REQUEST, "added_later": [1, 2], "seq": 9})
    assert msg == GlideinRequest(**REQUEST, seq=9)


def test_absent_optional_fields_take_their_defaults_each_its_own():
    first, second = (_decode("glidein.request", 2, REQUEST) for _ in range(2))
    assert first.credentials == {} and first.credentials is not second.credentials
    assert first.idle_lifetime_s == 0.0


@pytest.mark.parametrize(("fields", "message"), [
    ({**REQUEST, "idle_target": "1"}, "idle_target: Expected `int`, got `str`"),
    ({**REQUEST, "idle_target": True}, "idle_target: Expected `int`, got `bool`"),
    ({**REQUEST, "credentials": {"d": "text"}}, "credentials[...]: Expected `bytes`, got `str`"),
    ({k: v for k, v in REQUEST.items() if k != "entry"}, "Object missing required field `entry`"),
])
def test_a_wrong_value_is_refused_naming_schema_version_and_field(fields, message):
    with pytest.raises(SchemaError) as refused:
        _decode("glidein.request", 2, fields)
    assert str(refused.value) == f"glidein.request v2: {message}"


def test_the_path_of_a_nested_field_is_named():
    body = {"cluster": 1, "owner": "o", "submit_file": "s",
            "procs": [{"proc": 0, "ad": "[]"}, {"proc": 1, "ad": 5}]}
    with pytest.raises(SchemaError, match=r"^job.submit v1: procs\[1\].ad: Expected `str`"):
        _decode("job.submit", 1, body)


def test_an_integer_is_a_float_but_a_float_is_no_integer():
    assert _decode("glidein.request", 2, {**REQUEST, "time": 3}).time == 3.0
    with pytest.raises(SchemaError, match="idle_target: Expected `int`, got `float`"):
        _decode("glidein.request", 2, {**REQUEST, "idle_target": 1.5})


def test_a_body_that_is_no_map_or_no_msgpack_is_refused():
    with pytest.raises(SchemaError, match="^glidein.request v2: Expected `object`, got `array`"):
        schemas.decode("glidein.request", 2, msgpack.packb([1, 2]))
    with pytest.raises(SchemaError, match="^glidein.request v2: body is not msgpack"):
        schemas.decode("glidein.request", 2, b"\xc1")


def test_an_old_version_is_checked_as_itself_then_upgraded():
    v1 = {**REQUEST, "remove_excess": True}
    assert _decode("glidein.request", 1, v1).remove_excess == "IDLE"
    assert schemas.from_plain("glidein.request", 1, v1) == GlideinRequest(
        **{**REQUEST, "remove_excess": "IDLE"})
    with pytest.raises(SchemaError, match="glidein.request v1: remove_excess: Expected `bool`"):
        _decode("glidein.request", 1, REQUEST)


def test_plain_maps_keep_bytes_and_convert_back():
    msg = GlideinRequest(**REQUEST, credentials={"domain": b"\x00sealed"})
    plain = schemas.to_plain(msg)
    assert plain["credentials"] == {"domain": b"\x00sealed"}
    assert schemas.from_plain("glidein.request", 2, plain) == msg
    with pytest.raises(SchemaError, match="glidein.request v2: seq: Expected `int`"):
        schemas.from_plain("glidein.request", 2, {**plain, "seq": "x"})
