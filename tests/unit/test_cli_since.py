"""The CLI's time parsing (--since)."""

from __future__ import annotations

import time

import pytest

from services.cli.main import Failure
from services.cli.output import parse_since


@pytest.mark.parametrize(("text", "age"), [("30s", 30), ("10m", 600), ("2h", 7200),
                                           ("1d", 86400)])
def test_since_accepts_ages(text, age):
    assert abs(parse_since(text) - (time.time() - age)) < 2


def test_since_accepts_epoch_and_iso_times():
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("2023-11-14T22:13:20Z") == 1700000000.0


def test_since_starts_at_the_whole_second_so_no_event_inside_is_dropped():
    stamped = 1700000000  # the AMQP timestamp of an event published at 1700000000.9
    assert stamped >= parse_since("1700000000.5")
    assert stamped >= parse_since("2023-11-14T22:13:20.5Z")
    assert stamped < parse_since("1700000001")  # a window from the next second leaves it out
    age = parse_since("1s")
    assert age.is_integer() and time.time() - 3 < age <= time.time() - 1


def test_since_rejects_nonsense_with_a_usage_error():
    with pytest.raises(Failure) as err:
        parse_since("yesterday-ish")
    assert err.value.exit_code == 2 and "--since" in err.value.message
