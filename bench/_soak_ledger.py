"""The soak run's limit ledger: what the simulated chargers may be applying, over time.

Built from the chargers' side only: the transactions the soak started and stopped on each
connector (with the charger clock's times) and every SetChargingProfile the chargers saw
(``ChargePoint.profile_log``, with the times each was received and answered). For a connector
with a transaction, the limit it may apply is its last accepted TxProfile for that transaction,
or a TxProfile it has received and not answered yet if that one is higher (it may already be
applying it). A connector whose transaction has no accepted TxProfile yet runs on the failsafe
default (docs/ocpp.md, "The failsafe default"); that is the one excursion the controller allows
(docs/allocation.md, "Holding back"), so it is counted apart, not summed.

Each status poll of the controller gives a REST allocation and a root limit that held at one
unknown instant between the request leaving and the answer arriving. The ledger compares them
with the *lowest* sum of charger-side limits over that window: at the instant the status was
taken the true sum was at least that low, so a figure above the root limit is a real overrun,
never an artefact of the two sides being read at slightly different times.

Events are processed in time order, a little behind real time (the caller passes a watermark),
so that everything up to the watermark has been recorded before it is used.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

from protocol.messages import (
    ChargingProfile,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
)
from simulators.chargepoint import ChargePoint, ProfileRecord
from simulators.charger import LocalTransaction

__all__ = ["LimitLedger", "PollVerdict"]

ConnectorKey = tuple[str, int]  # (charge point id, OCPP connector id)


class _Kind(IntEnum):
    START = 0
    STOP = 1
    RECEIVED = 2
    ANSWERED = 3
    REFUSED = 4


@dataclass(slots=True)
class _Connector:
    tx: LocalTransaction | None = None
    accepted_kw: float | None = None
    pending_kw: float | None = None

    def limit_kw(self) -> float | None:
        """What the connector may apply under a TxProfile; None without a transaction or while
        it is still on the failsafe default."""
        if self.tx is None:
            return None
        values = [v for v in (self.accepted_kw, self.pending_kw) if v is not None]
        return max(values) if values else None


@dataclass(slots=True)
class _Poll:
    sent_at: float
    answered_at: float
    rest_kw: float
    root_kw: float
    lowest_kw: float | None = None  # lowest charger-side sum seen in the window so far


@dataclass(frozen=True, slots=True)
class PollVerdict:
    at: float
    chargers_kw: float  # lowest charger-side sum over the poll's window
    rest_kw: float
    root_kw: float

    @property
    def total_kw(self) -> float:
        return self.chargers_kw + self.rest_kw

    @property
    def exceeded(self) -> bool:
        return self.total_kw > self.root_kw + 1e-6


@dataclass
class LimitLedger:
    chargepoints: dict[str, ChargePoint]
    connectors: dict[ConnectorKey, _Connector] = field(default_factory=dict)
    # Results.
    verdicts: list[PollVerdict] = field(default_factory=list)
    highest_sum_kw: float = 0.0  # charger-side TxProfile limits alone, at any instant
    highest_sum_at: float = 0.0
    on_failsafe_most: int = 0  # transactions running on the failsafe default at once
    first_profile_waits: list[float] = field(default_factory=list)  # start -> first accepted
    tx_profiles_accepted: int = 0
    # Refused for the running transaction: the charger did not know its id yet, i.e. the
    # profile arrived before the StartTransaction.conf. Refused for a transaction that had
    # ended on the charger (its StopTransaction on its way): a race that is expected.
    refused_id_unknown: int = 0
    refused_ended: int = 0
    default_profiles: int = 0
    unmatched_profiles: int = 0  # accepted for a transaction the ledger does not know: a bug
    late_events: int = 0  # recorded behind the watermark (clamped to it)

    def __post_init__(self) -> None:
        self._events: list[tuple[float, int, _Kind, ConnectorKey, object]] = []
        self._order = 0
        self._read: dict[str, int] = dict.fromkeys(self.chargepoints, 0)
        self._polls: deque[_Poll] = deque()
        self._watermark = 0.0
        self._sum_kw = 0.0
        self._on_failsafe = 0
        self._waiting_first: dict[int, float] = {}  # id(tx) -> started_at

    # -- input ----------------------------------------------------------------------------------

    def transaction_started(
        self, charger_id: str, connector_id: int, tx: LocalTransaction, *, timed: bool = True
    ) -> None:
        """``timed``: count its wait for a first TxProfile (it started with the charger online
        and the controller up)."""
        self._push(tx.started_at, _Kind.START, (charger_id, connector_id), (tx, timed))

    def transaction_stopped(self, charger_id: str, connector_id: int, tx: LocalTransaction) -> None:
        assert tx.stopped_at is not None
        self._push(tx.stopped_at, _Kind.STOP, (charger_id, connector_id), tx)

    def poll(self, sent_at: float, answered_at: float, rest_kw: float, root_kw: float) -> None:
        """A status the controller computed at some instant in [sent_at, answered_at]."""
        self._polls.append(_Poll(sent_at, answered_at, rest_kw, root_kw))

    def _push(self, at: float, kind: _Kind, key: ConnectorKey, payload: object) -> None:
        if at < self._watermark:
            self.late_events += 1
            at = self._watermark
        self._order += 1
        self._events.append((at, self._order, kind, key, payload))

    def _collect_profiles(self, watermark: float) -> None:
        for charger_id, cp in self.chargepoints.items():
            log = cp.profile_log
            index = self._read[charger_id]
            # By arrival: a record is in the log once answered, which takes the charger a loop
            # step, far less than the ledger's lag behind real time.
            while index < len(log) and log[index].received_at <= watermark:
                record = log[index]
                index += 1
                purpose = record.profile.charging_profile_purpose
                if purpose is ChargingProfilePurposeType.TX_DEFAULT_PROFILE:
                    self.default_profiles += 1
                    continue
                if purpose is not ChargingProfilePurposeType.TX_PROFILE:
                    continue
                key = (charger_id, record.connector_id)
                if not record.accepted:  # never applied; only classified
                    self._push(record.answered_at, _Kind.REFUSED, key, record)
                    continue
                self._push(record.received_at, _Kind.RECEIVED, key, record)
                self._push(record.answered_at, _Kind.ANSWERED, key, record)
            self._read[charger_id] = index

    # -- processing -----------------------------------------------------------------------------

    def advance(self, watermark: float) -> None:
        """Process everything up to ``watermark``; finished polls become verdicts."""
        watermark = max(watermark, self._watermark)
        self._collect_profiles(watermark)
        self._events.sort()
        cut = 0
        while cut < len(self._events) and self._events[cut][0] <= watermark:
            cut += 1
        due, self._events = self._events[:cut], self._events[cut:]
        for at, _, kind, key, payload in due:
            self._reach(at)
            self._apply(at, kind, key, payload)
            self._observe(at)
        self._reach(watermark)
        self._watermark = watermark

    def _reach(self, at: float) -> None:
        """Every event before ``at`` is applied: open the polls that started before it, close
        those that ended before it."""
        while self._polls:
            poll = self._polls[0]
            if poll.sent_at >= at:
                return
            if poll.lowest_kw is None:
                poll.lowest_kw = self._sum_kw
            if poll.answered_at >= at:
                return
            self._polls.popleft()
            self.verdicts.append(
                PollVerdict(poll.answered_at, poll.lowest_kw, poll.rest_kw, poll.root_kw)
            )

    def _observe(self, at: float) -> None:
        if self._sum_kw > self.highest_sum_kw:
            self.highest_sum_kw, self.highest_sum_at = self._sum_kw, at
        self.on_failsafe_most = max(self.on_failsafe_most, self._on_failsafe)
        poll = self._polls[0] if self._polls else None
        if poll is not None and poll.lowest_kw is not None:
            poll.lowest_kw = min(poll.lowest_kw, self._sum_kw)

    def _apply(self, at: float, kind: _Kind, key: ConnectorKey, payload: object) -> None:
        connector = self.connectors.setdefault(key, _Connector())
        before = connector.limit_kw()
        on_failsafe_before = connector.tx is not None and before is None
        match kind:
            case _Kind.START:
                assert isinstance(payload, tuple)
                tx, timed = payload
                connector.tx, connector.accepted_kw, connector.pending_kw = tx, None, None
                if timed:
                    self._waiting_first[id(tx)] = tx.started_at
            case _Kind.STOP:
                assert isinstance(payload, LocalTransaction)
                if connector.tx is payload:
                    connector.tx, connector.accepted_kw, connector.pending_kw = None, None, None
                self._waiting_first.pop(id(payload), None)
            case _Kind.REFUSED:
                assert isinstance(payload, ProfileRecord)
                tx = connector.tx
                if tx is not None and tx.transaction_id == payload.profile.transaction_id:
                    self.refused_id_unknown += 1
                else:
                    self.refused_ended += 1
            case _Kind.RECEIVED | _Kind.ANSWERED:
                assert isinstance(payload, ProfileRecord)
                tx = connector.tx
                if tx is None or tx.transaction_id != payload.profile.transaction_id:
                    if kind is _Kind.ANSWERED:
                        self.unmatched_profiles += 1
                    return
                kw = profile_kw(payload.profile, self.chargepoints[key[0]])
                if kind is _Kind.RECEIVED:
                    connector.pending_kw = kw
                else:
                    connector.accepted_kw, connector.pending_kw = kw, None
                    self.tx_profiles_accepted += 1
                    started = self._waiting_first.pop(id(tx), None)
                    if started is not None:
                        self.first_profile_waits.append(at - started)
        after = connector.limit_kw()
        self._sum_kw += (after or 0.0) - (before or 0.0)
        on_failsafe_after = connector.tx is not None and after is None
        self._on_failsafe += int(on_failsafe_after) - int(on_failsafe_before)

    # -- results --------------------------------------------------------------------------------

    def worst(self) -> PollVerdict | None:
        """The poll where the chargers and REST sessions came closest to (or over) the root."""
        if not self.verdicts:
            return None
        return max(self.verdicts, key=lambda v: v.total_kw - v.root_kw)

    def highest(self) -> PollVerdict | None:
        if not self.verdicts:
            return None
        return max(self.verdicts, key=lambda v: v.total_kw)

    def exceeded(self) -> list[PollVerdict]:
        return [v for v in self.verdicts if v.exceeded]

    def wait_quantiles(self) -> tuple[float, float, float] | None:
        """Median, 99th percentile and maximum of start -> first accepted TxProfile (s)."""
        waits = self.first_profile_waits
        if not waits:
            return None
        if len(waits) == 1:
            return waits[0], waits[0], waits[0]
        p99 = statistics.quantiles(waits, n=100, method="inclusive")[98]
        return statistics.median(waits), p99, max(waits)


def profile_kw(profile: ChargingProfile, cp: ChargePoint) -> float:
    """The profile's first (here: only) period as kW, as this charger reads it."""
    schedule = profile.charging_schedule
    period = schedule.charging_schedule_period[0]
    limit = float(period.limit)
    if schedule.charging_rate_unit is ChargingRateUnitType.A:
        phases = period.number_phases or cp.spec.phases
        return limit * cp.spec.voltage * phases / 1000
    return limit / 1000
