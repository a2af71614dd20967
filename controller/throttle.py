"""What a remote client may cost us in failed logins and log lines (docs/security.md).

Both classes take ``now`` (seconds, the loop's clock) from the caller, so they are
tested on a manual clock, and both keep a bounded table: a client that changes its
address for every attempt cannot grow them without bound.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

# Failed authentications from one address tolerated within WINDOW before it is blocked.
FAILURE_LIMIT = 10
FAILURE_WINDOW = 60.0
BLOCK_FOR = 60.0
# A peer's log lines: the first in full, then one count per this many seconds.
LOG_INTERVAL = 60.0
# Addresses or peers remembered at most; the least recently seen is forgotten first.
MAX_TRACKED = 10_000


@dataclass
class _Failures:
    window_start: float
    count: int = 0
    blocked_until: float = 0.0
    logged_at: float | None = None
    unlogged: int = 0


class FailureThrottle:
    """Failed authentications per client address: logged once a minute with a count,
    and an address with ``limit`` failures within ``window`` seconds is refused without
    checking for ``block`` seconds."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW,
        block: float = BLOCK_FOR,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._log = log
        self._what = what
        self._limit = limit
        self._window = window
        self._block = block
        self._max_tracked = max_tracked
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()

    def is_blocked(self, address: str, now: float) -> bool:
        entry = self._by_address.get(address)
        return entry is not None and now < entry.blocked_until

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until a blocked address is heard again; 0 when it is not blocked."""
        entry = self._by_address.get(address)
        return 0.0 if entry is None else max(0.0, entry.blocked_until - now)

    def record_failure(self, address: str, now: float) -> None:
        entry = self._by_address.get(address)
        if entry is None or now - entry.window_start >= self._window:
            previous = entry
            entry = _Failures(window_start=now)
            if previous is not None:
                entry.logged_at = previous.logged_at
                entry.unlogged = previous.unlogged
                entry.blocked_until = previous.blocked_until
        self._by_address[address] = entry
        self._by_address.move_to_end(address)
        while len(self._by_address) > self._max_tracked:
            self._by_address.popitem(last=False)
        entry.count += 1
        entry.unlogged += 1
        if entry.count >= self._limit and now >= entry.blocked_until:
            entry.blocked_until = now + self._block
            self._log.warning(
                "%s: %d failed %s within %.0f s: refused for %.0f s",
                address,
                entry.count,
                self._what,
                self._window,
                self._block,
            )
        if entry.logged_at is None or now - entry.logged_at >= LOG_INTERVAL:
            self._log.warning(
                "%s: failed %s (%d since the last report)", address, self._what, entry.unlogged
            )
            entry.logged_at = now
            entry.unlogged = 0

    def __len__(self) -> int:
        return len(self._by_address)


@dataclass
class _PeerLines:
    logged_at: float
    suppressed: int = 0


class PeerLog:
    """Log lines caused by a remote peer, rate-limited per peer: the first in full,
    then at most one line per ``interval`` saying how many were left out."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        interval: float = LOG_INTERVAL,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._log = log
        self._interval = interval
        self._max_tracked = max_tracked
        self._peers: OrderedDict[str, _PeerLines] = OrderedDict()

    def log(self, peer: str, now: float, level: int, message: str, *args: object) -> None:
        if not self._log.isEnabledFor(level):
            return
        entry = self._peers.get(peer)
        if entry is not None and now - entry.logged_at < self._interval:
            entry.suppressed += 1
            return
        if entry is not None and entry.suppressed:
            self._log.log(
                level,
                "%s: %d similar lines left out in the last %.0f s",
                peer,
                entry.suppressed,
                now - entry.logged_at,
                extra={"peer": peer},
            )
        self._peers[peer] = _PeerLines(logged_at=now)
        self._peers.move_to_end(peer)
        while len(self._peers) > self._max_tracked:
            self._peers.popitem(last=False)
        self._log.log(level, "%s: " + message, peer, *args, extra={"peer": peer})

    def __len__(self) -> int:
        return len(self._peers)
