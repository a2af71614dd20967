"""The station core without any server: sessions, load, and the battery they drive."""

from __future__ import annotations

import pytest

from tests.controller.conftest import example_config
from tests.controller.core_harness import CoreHarness


def test_a_raised_limit_counts_in_the_load_until_the_next_reading() -> None:
    h = CoreHarness(example_config())
    a_tx = h.start_transaction("CP001", 1)
    h.advance(1)
    b_tx = h.start_transaction("CP001", 2)
    a, b = h.session_of(a_tx), h.session_of(b_tx)
    assert (a.allocated_power, b.allocated_power) == (100, 100)
    h.advance(1)
    h.meter("CP001", a_tx, kw=95.0)
    h.meter("CP001", b_tx, kw=99.0)
    assert h.core.load() == pytest.approx(194)
    h.advance(1)
    h.stop_transaction("CP001", b_tx, 0)
    # a may take 200 kW at once: until it says what it draws, it counts at 200.
    assert a.allocated_power == 200
    assert h.core.load() == pytest.approx(200)
    h.advance(1)
    h.meter("CP001", a_tx, kw=180.0)
    assert h.core.load() == pytest.approx(180)


def test_a_lowered_limit_keeps_the_reading() -> None:
    h = CoreHarness(example_config())
    a_tx = h.start_transaction("CP001", 1)
    h.advance(1)
    h.meter("CP001", a_tx, kw=150.0)
    h.advance(1)
    h.start_transaction("CP001", 2)
    assert h.session_of(a_tx).allocated_power == 100
    assert h.core.load() == pytest.approx(150 + 100)  # its reading, the other's limit
