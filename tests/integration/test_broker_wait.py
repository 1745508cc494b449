"""`make test`/`make demo` wait for a broker they just started: found at once, or given up on."""

from __future__ import annotations

import time

import pytest

from services.runtime.broker import wait_for_broker
from tests.conftest import fresh_settings

pytestmark = pytest.mark.broker


def test_a_broker_that_answers_is_found_without_waiting(rabbit_settings):
    started = time.monotonic()
    assert wait_for_broker(rabbit_settings, timeout_s=30) is True
    assert time.monotonic() - started < 5


def test_a_broker_that_never_answers_is_given_up_on_after_the_timeout(tmp_path):
    nobody = fresh_settings(tmp_path, AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    started = time.monotonic()
    assert wait_for_broker(nobody, timeout_s=1.0, every_s=0.2) is False
    assert 1.0 <= time.monotonic() - started < 10
