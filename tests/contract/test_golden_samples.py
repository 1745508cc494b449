"""Every schema version has a golden sample that still decodes the same way."""

from __future__ import annotations

import msgpack
import pytest

import schemas
from schemas.golden import missing, sample_path
from services.runtime import codec
from services.runtime.codec import Envelope

ALL = schemas.all_schemas()


def test_every_schema_version_has_a_golden_sample():
    assert missing() == [], "run `python -m schemas.golden` and commit the new samples"


@pytest.mark.parametrize("cls", ALL, ids=lambda c: f"{c.NAME}.v{c.VERSION}")
def test_golden_sample_decodes_through_the_codec(cls):
    body = sample_path(cls).read_bytes()
    env = Envelope(type=cls.NAME, version=cls.VERSION, body=body, message_id="m",
                   headers={codec.VERSION_HEADER: cls.VERSION})
    decoded = codec.decode(env)
    newest = schemas.latest_version(cls.NAME)
    assert newest == decoded.VERSION
    if newest == cls.VERSION:
        # Optional fields added since the sample was written take their defaults;
        # every field the sample has must come back unchanged.
        plain = msgpack.unpackb(body, raw=False)
        decoded_plain = schemas.to_plain(decoded)
        assert _kept(plain, decoded_plain)  # nested records may have gained fields too
        assert set(decoded_plain) - set(plain) <= _optional_fields(cls)


def _kept(sample, decoded) -> bool:
    """Every field of the sample, at any depth, came back unchanged."""
    if isinstance(sample, dict) and isinstance(decoded, dict):
        return all(k in decoded and _kept(v, decoded[k]) for k, v in sample.items())
    if isinstance(sample, list) and isinstance(decoded, list):
        return len(sample) == len(decoded) and all(map(_kept, sample, decoded))
    return sample == decoded


def _optional_fields(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def test_v1_glidein_request_sample_upgrades_to_remove_excess_mode():
    body = sample_path(schemas.lookup("glidein.request", 1)).read_bytes()
    assert msgpack.unpackb(body)["remove_excess"] is True
    env = Envelope(type="glidein.request", version=1, body=body, message_id="m",
                   headers={codec.VERSION_HEADER: 1})
    assert codec.decode(env).remove_excess == "IDLE"


def test_a_version_nobody_declared_is_refused():
    body = sample_path(schemas.lookup("job.report", 1)).read_bytes()
    env = Envelope(type="job.report", version=2, body=body, message_id="m",
                   headers={codec.VERSION_HEADER: 2})
    with pytest.raises(codec.Undecodable, match="unknown schema job.report v2"):
        codec.decode(env)


def test_version_header_is_required_even_when_fields_fit():
    body = sample_path(schemas.lookup("job.report", 1)).read_bytes()
    env = Envelope(type="job.report", version=1, body=body, message_id="m", headers={})
    with pytest.raises(codec.Undecodable, match="x-schema-version"):
        codec.decode(env)
