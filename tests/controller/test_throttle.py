from __future__ import annotations

import logging

import pytest

from controller.throttle import FailureThrottle, PeerLog

log = logging.getLogger("test.throttle")


def test_an_address_is_blocked_after_ten_failures_within_a_minute_and_freed_after_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = FailureThrottle(log, "logins")
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for second in range(9):
            throttle.record_failure("10.0.0.1", float(second))
        assert not throttle.is_blocked("10.0.0.1", 9.0)
        throttle.record_failure("10.0.0.1", 9.0)
    assert throttle.is_blocked("10.0.0.1", 9.0)
    assert throttle.is_blocked("10.0.0.1", 68.9)
    assert not throttle.is_blocked("10.0.0.1", 69.0)
    assert not throttle.is_blocked("10.0.0.2", 9.0)
    # One report line for the first failure, one for the block: not one per attempt.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "refused for 60 s" in lines[1]


def test_failures_spread_over_more_than_a_minute_do_not_block() -> None:
    throttle = FailureThrottle(log, "logins")
    for attempt in range(30):
        throttle.record_failure("10.0.0.1", attempt * 7.0)
    assert not throttle.is_blocked("10.0.0.1", 30 * 7.0)


def test_the_tables_stay_bounded_whatever_the_number_of_addresses() -> None:
    throttle = FailureThrottle(log, "logins", max_tracked=100)
    lines = PeerLog(log, max_tracked=100)
    for n in range(1000):
        throttle.record_failure(f"10.0.{n // 256}.{n % 256}", 0.0)
        lines.log(f"peer{n}", 0.0, logging.WARNING, "junk")
    assert len(throttle) == 100
    assert len(lines) == 100


def test_a_peer_gets_one_line_then_a_count_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    lines = PeerLog(log)
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        for n in range(1000):
            lines.log("CP1", n * 0.01, logging.INFO, "unreadable frame %d", n)
        lines.log("CP2", 0.0, logging.INFO, "unreadable frame")
        lines.log("CP1", 61.0, logging.INFO, "unreadable frame %d", 1000)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "CP1: unreadable frame 0",
        "CP2: unreadable frame",
        "CP1: 999 similar lines left out in the last 61 s",
        "CP1: unreadable frame 1000",
    ]
