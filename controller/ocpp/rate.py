"""How many messages one charger may send (docs/security-chargers.md, "Message rate").

A token bucket per charger: ``ocpp.maxMessagesPerSecond`` tokens a second, at most
:data:`MESSAGE_BURST` saved up, one per message received. A charger over the rate is
"over" from its first refused message for as long as refusals keep coming (no gap longer
than :data:`OVER_RATE_GAP`); the server disconnects it once that has lasted
:data:`DISCONNECT_AFTER`. Time is the caller's ``now`` (the station's clock), so tests
drive it with a manual clock.
"""

from __future__ import annotations

# Messages a charger may send at once after a quiet spell (a boot, a burst of queued
# meter values after a reconnection).
MESSAGE_BURST = 200
# A charger over the rate for this long is disconnected.
DISCONNECT_AFTER = 30.0
# Refusals further apart than this are separate episodes: one burst now and one in a
# minute are not "keeping it up".
OVER_RATE_GAP = 2.0


class MessageRate:
    def __init__(self, per_second: float, burst: int = MESSAGE_BURST) -> None:
        self.per_second = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated: float | None = None
        self._over_since: float | None = None
        self._refused_at = 0.0

    def admit(self, now: float) -> bool:
        """Take a token for one message: False when there is none (the message is refused)."""
        if self._updated is not None and now > self._updated:
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self.per_second)
        # A clock that went back (a wall-clock step) adds nothing and counts from here.
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._over_since is None or now - self._refused_at > OVER_RATE_GAP:
            self._over_since = now
        self._refused_at = now
        return False

    def over_for(self, now: float) -> float:
        """Seconds the charger has kept above the rate (0 when it is not)."""
        if self._over_since is None or now - self._refused_at > OVER_RATE_GAP:
            return 0.0
        return max(0.0, now - self._over_since)
