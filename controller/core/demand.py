"""What an OCPP vehicle can take, learned from what it draws.

OCPP 1.6 never says how much power a vehicle accepts, so a session started by a
charger is capped only by its charger. A car that draws far less than its
limit (its battery nearly full, a small on-board charger) would then hold
power that the others could use, and ``fair`` could do no better than
``even-split``. So once a session has had time to ramp up, a reading well
below a limit the charger has accepted caps the session a little above what
it draws; a reading that comes close to that cap lifts it again, and the next
readings learn anew. Pure: the station calls it with each reading.
"""

from __future__ import annotations

import math

# A vehicle needs this long after its start to ramp up to what it can take.
RAMP_UP_SECONDS = 120.0
# Below this share of its limit (less 1 kW) a vehicle is not using its limit.
UNUSED_SHARE = 0.8
# Room left above the observed draw: the draw wanders, and a cap that is reached
# is lifted, so this is the step of learning, not a limit on the car.
HEADROOM_SHARE = 0.1
HEADROOM_KW = 2.0
# A lower cap is only worth a reallocation when it frees at least this much.
MIN_STEP_KW = 2.0


def learned_cap(
    cap: float | None, consumed: float, limit: float, seconds_since_start: float
) -> float | None:
    """The session's new learned cap (kW) after a reading of ``consumed`` kW drawn
    under a confirmed ``limit``; None when nothing is known (or no longer true)."""
    if seconds_since_start < RAMP_UP_SECONDS:
        return cap
    if cap is not None and consumed >= cap - 1.0:
        return None  # it draws all it is allowed: it may want more
    if consumed < UNUSED_SHARE * limit - 1.0:
        candidate = float(math.ceil(consumed * (1 + HEADROOM_SHARE) + HEADROOM_KW))
        if cap is None or candidate <= cap - MIN_STEP_KW:
            return candidate
    return cap
