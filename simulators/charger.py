"""A charge point's state without I/O: connectors, transactions, meters, profiles, configuration.

The asyncio shell (:mod:`simulators.chargepoint`) turns OCPP messages into calls on this model
and this model's answers back into messages; every method takes the time as ``now`` (epoch
seconds). Physics: between two calls to :meth:`ChargerModel.advance` each connector draws
``min(applied limit, what its load accepts)``, the connectors together never more than the
charge point's cap (its hardware maximum and any ChargePointMaxProfile, shared in proportion
to what each connector asks for), and the energy goes into the meter register and the vehicle.

AC chargers (``ChargerSpec.ac``, from a charger's ``electrical`` config) signal a current per
phase to the car, as IEC 61851-1 does: the applied limit (W or A, whichever the winning
profile uses; A per phase, its ``numberPhases`` respected) becomes a current per phase on the
phases the car uses, the fewer of the car's and the charger's. Below the charger's minimum
current (6 A) a car cannot charge: the charger suspends it (draws 0, SuspendedEVSE), or with the
quirk ``below_minimum="clamp"`` signals the minimum anyway and the car draws 6 A, above its
limit, as some hardware does. The current each connector draws on each of the charger's own
phases is kept (``ConnectorModel.phase_a``) for the MeterValues and for the site's phases
(``AcSupply.wiring``). A charger without ``ac`` follows any limit down to 0, as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from protocol.messages import (
    ChargePointStatus,
    ChargingProfile,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ChargingSchedule,
    ClearChargingProfileRequest,
    ClearChargingProfileStatus,
    ConfigurationStatus,
    KeyValue,
)
from simulators.connector import ConnectorEvent, ConnectorStateMachine
from simulators.profiles import Electrical, ProfileStack, to_datetime
from simulators.vehicles import Vehicle

__all__ = ["AcSupply", "ChargerModel", "ChargerSpec", "ConnectorModel", "LocalTransaction"]

Unit = ChargingRateUnitType
S = ChargePointStatus

# OCPP 1.6 section 9.1 names the feature profiles; SmartCharging is the one that matters here.
_FEATURES = ("Core", "SmartCharging", "RemoteTrigger")
_UNIT_NAMES = {Unit.A: "Current", Unit.W: "Power"}
SITE_PHASES = ("L1", "L2", "L3")
BELOW_MINIMUM = ("suspend", "clamp")


@dataclass(frozen=True, slots=True)
class AcSupply:
    """How an AC charger supplies a car (docs/electrical-allocation.md): the minimum current
    per phase a car can charge at, the hardware's maximum per phase (None: what
    ``max_power_w`` allows), the site phase each of the charger's phases is wired to, and what
    it does with a limit below the minimum: ``"suspend"`` (draw nothing) or ``"clamp"`` (draw
    the minimum)."""

    min_current: float = 6.0
    max_current: float | None = None
    wiring: tuple[str, ...] = SITE_PHASES
    below_minimum: str = "suspend"

    def __post_init__(self) -> None:
        if self.below_minimum not in BELOW_MINIMUM:
            raise ValueError(f"below_minimum must be one of {', '.join(BELOW_MINIMUM)}")
        if any(phase not in SITE_PHASES for phase in self.wiring) or not self.wiring:
            raise ValueError("wiring names site phases L1, L2, L3")


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """What a charge point is, as fixed as its hardware. Powers in W."""

    charge_point_id: str
    connectors: int = 2
    max_power_w: float = 22_000.0  # the whole charge point
    connector_max_power_w: float | None = None  # per connector; default max_power_w
    voltage: float = 230.0
    phases: int = 3
    smart_charging: bool = True
    rate_units: tuple[Unit, ...] = (Unit.A, Unit.W)
    vendor: str = "EVSim"
    model: str = "SimCharger"
    firmware_version: str = "1.0.0"
    heartbeat_interval: int = 300
    meter_interval: int = 60
    max_stack_level: int = 8
    max_profiles: int = 16
    require_transaction_id: bool = False
    transaction_message_attempts: int = 3
    transaction_message_retry_interval: int = 30
    ac: AcSupply | None = None  # an AC charger's current per phase; None: watts, no minimum

    def __post_init__(self) -> None:
        if self.connectors < 1:
            raise ValueError("a charge point has at least one connector")
        if self.ac is not None and len(self.ac.wiring) < self.phases:
            raise ValueError("wiring names a site phase for each of the charger's phases")
        if not self.max_power_w > 0:
            raise ValueError("max_power_w must be positive")
        if not self.rate_units:
            raise ValueError("rate_units must allow A or W")


@dataclass(slots=True)
class LocalTransaction:
    """A transaction as the charger knows it; ``transaction_id`` arrives with
    StartTransaction.conf, which may come much later (or after a reconnect)."""

    local_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    started_at: float
    transaction_id: int | None = None
    stopped_at: float | None = None
    meter_stop: int | None = None
    # A TxProfile that came with RemoteStartTransaction, installed once the id is known.
    pending_profile: ChargingProfile | None = None
    # The power (W) the last MeterValues sample of this transaction reported.
    reported_w: float | None = None
    # Times the charger suspended it (Charging -> SuspendedEVSE) after it had drawn power.
    pauses: int = 0


@dataclass(slots=True)
class ConnectorModel:
    connector_id: int
    machine: ConnectorStateMachine = field(default_factory=ConnectorStateMachine)
    transaction: LocalTransaction | None = None
    meter_wh: float = 0.0
    power_w: float = 0.0  # drawn right now
    # A per phase of the charger (its phases 1..3, not the site's) drawn right now; AC only.
    phase_a: tuple[float, ...] = ()
    vehicle: Vehicle | None = None
    # A load with no vehicle model: None draws whatever it is allowed, else at most this.
    demand_w: float | None = None

    @property
    def status(self) -> ChargePointStatus:
        return self.machine.status


class ChargerModel:
    def __init__(self, spec: ChargerSpec, now: float) -> None:
        self.spec = spec
        self.electrical = Electrical(spec.voltage, spec.phases)
        self.profiles = ProfileStack(
            spec.connectors,
            self.electrical,
            max_stack_level=spec.max_stack_level,
            max_installed=spec.max_profiles,
            allowed_units=spec.rate_units,
            require_transaction_id=spec.require_transaction_id,
        )
        self.connectors = {n: ConnectorModel(n) for n in range(1, spec.connectors + 1)}
        self._last_advance = now
        self._next_local_id = 1
        self.status_changes: list[int] = []
        self.configuration: dict[str, tuple[str, bool]] = self._initial_configuration()

    # -- connectors and transactions ------------------------------------------------------------

    def connector(self, connector_id: int) -> ConnectorModel:
        try:
            return self.connectors[connector_id]
        except KeyError:
            raise ValueError(f"no connector {connector_id}") from None

    def fire(self, connector_id: int, event: ConnectorEvent) -> ChargePointStatus:
        return self.connector(connector_id).machine.fire(event)

    def transaction_by_id(self, transaction_id: int) -> LocalTransaction | None:
        for connector in self.connectors.values():
            tx = connector.transaction
            if tx is not None and tx.transaction_id == transaction_id:
                return tx
        return None

    def begin_transaction(self, connector_id: int, id_tag: str, now: float) -> LocalTransaction:
        """The connector goes Charging and its meter start is read (OCPP 1.6 section 4.8)."""
        self.advance(now)
        connector = self.connector(connector_id)
        if connector.transaction is not None:
            raise ValueError(f"connector {connector_id} already has a transaction")
        connector.machine.fire(ConnectorEvent.START)
        tx = LocalTransaction(
            self._next_local_id, connector_id, id_tag, round(connector.meter_wh), now
        )
        self._next_local_id += 1
        connector.transaction = tx
        self._settle(now)
        return tx

    def confirm_transaction(self, tx: LocalTransaction, transaction_id: int, now: float) -> None:
        tx.transaction_id = transaction_id
        if tx.pending_profile is not None and tx.stopped_at is None:
            self.advance(now)
            self.profiles.install(
                tx.connector_id, tx.pending_profile, to_datetime(now), transaction_id
            )
            tx.pending_profile = None
            self._settle(now)

    def end_transaction(self, connector_id: int, now: float) -> LocalTransaction:
        """Stop: meter read, connector Finishing, the transaction's TxProfile gone (3.13.1)."""
        self.advance(now)
        connector = self.connector(connector_id)
        tx = connector.transaction
        if tx is None:
            raise ValueError(f"connector {connector_id} has no transaction")
        connector.machine.fire(ConnectorEvent.STOP)
        tx.stopped_at = now
        tx.meter_stop = round(connector.meter_wh)
        connector.transaction = None
        connector.power_w = 0.0
        self.profiles.end_transaction(connector_id)
        self._settle(now)
        return tx

    # -- profiles -------------------------------------------------------------------------------

    def set_charging_profile(
        self, connector_id: int, profile: ChargingProfile, now: float
    ) -> ChargingProfileStatus:
        if not self.spec.smart_charging:
            return ChargingProfileStatus.NOT_SUPPORTED
        self.advance(now)  # energy so far was drawn under the old limit
        running = None
        if 1 <= connector_id <= self.spec.connectors:
            tx = self.connectors[connector_id].transaction
            running = tx.transaction_id if tx is not None else None
        status = self.profiles.install(connector_id, profile, to_datetime(now), running)
        self._settle(now)
        return status

    def clear_charging_profile(
        self, request: ClearChargingProfileRequest, now: float
    ) -> ClearChargingProfileStatus:
        self.advance(now)
        status = self.profiles.clear(
            request.id, request.connector_id, request.charging_profile_purpose, request.stack_level
        )
        self._settle(now)
        return status

    def composite_schedule(
        self, connector_id: int, duration: int, unit: Unit | None, now: float
    ) -> ChargingSchedule:
        unit = unit or self.spec.rate_units[-1]
        start = to_datetime(now)
        periods = self.profiles.composite(
            connector_id,
            start,
            duration,
            unit,
            self._tx_start(connector_id),
            self._hardware_w(connector_id),
        )
        return ChargingSchedule(
            duration=duration,
            start_schedule=start,
            charging_rate_unit=unit,
            charging_schedule_period=periods,
        )

    def applied_limit_w(self, connector_id: int, now: float) -> float:
        """The limit the charger applies on a connector now: its profiles, its hardware and the
        charge point's cap (connector 0: the charge point as a whole)."""
        at = to_datetime(now)
        if self.spec.ac is not None and connector_id != 0:
            amps, phases = self.applied_current(connector_id, now)
            return amps * self.spec.voltage * phases
        profiled = self.profiles.limit_w(connector_id, at, self._tx_start(connector_id))
        return min(profiled, self._hardware_w(connector_id), self.charge_point_cap_w(now))

    def applied_current(self, connector_id: int, now: float) -> tuple[float, int]:
        """An AC charger's limit on a connector as the car sees it: the current per phase
        signalled (profiles and hardware; before the minimum is applied) and the phases the
        car draws on."""
        ac = self.spec.ac
        assert ac is not None, "only an AC charger signals a current"
        phases = self._phases_offered(connector_id)
        amps, phases = self.profiles.limit_per_phase(
            connector_id, to_datetime(now), self._tx_start(connector_id), phases
        )
        hardware_w = min(self._hardware_w(connector_id), self.spec.max_power_w)
        hardware = hardware_w / (self.spec.voltage * phases)
        # The hardware's current per phase: its rating, else what maxPower allows on all its
        # phases (a 1-phase car on an 11 kW charger still gets 16 A, not 48).
        per_phase = ac.max_current or self.spec.max_power_w / (self.spec.voltage * self.spec.phases)
        hardware = min(hardware, per_phase)
        return min(amps, hardware), phases

    def signalled_current(self, connector_id: int, now: float) -> tuple[float, int]:
        """What an AC charger signals the car once its minimum is applied: 0 below it (or the
        minimum itself with the clamp quirk), with the phases the car draws on."""
        ac = self.spec.ac
        assert ac is not None, "only an AC charger signals a current"
        amps, phases = self.applied_current(connector_id, now)
        if 0 < amps < ac.min_current:
            amps = ac.min_current if ac.below_minimum == "clamp" else 0.0
        return max(0.0, amps), phases

    def _phases_offered(self, connector_id: int) -> int:
        """Phases a car on the connector can draw on: the fewer of its own and the charger's."""
        connector = self.connectors.get(connector_id)
        vehicle = None if connector is None else connector.vehicle
        if vehicle is None or vehicle.phases is None:
            return self.spec.phases
        return min(vehicle.phases, self.spec.phases)

    def charge_point_cap_w(self, now: float) -> float:
        return min(self.spec.max_power_w, self.profiles.limit_w(0, to_datetime(now)))

    # -- physics --------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Integrate every connector's draw from the last call up to ``now``."""
        dt = now - self._last_advance
        if dt <= 0:
            return
        self._last_advance = now
        for connector_id, allowed_w in self._offered_w(now).items():
            connector = self.connectors[connector_id]
            if connector.vehicle is not None:
                energy_kwh = connector.vehicle.charge(dt, allowed_w / 1000)
            else:
                energy_kwh = allowed_w * dt / 3_600_000
            connector.meter_wh += energy_kwh * 1000
        self._settle(now)

    def _offered_w(self, now: float) -> dict[int, float]:
        """Power each drawing connector gets: its own limit, then the charge point's cap shared
        in proportion to what each asks."""
        asks: dict[int, float] = {}
        for n, connector in self.connectors.items():
            if connector.transaction is None:
                continue
            limit = self._offered_limit_w(n, now)
            if connector.vehicle is not None:
                ask = connector.vehicle.power_at(connector.vehicle.soc, limit / 1000) * 1000
            else:
                demand = math.inf if connector.demand_w is None else connector.demand_w
                ask = min(limit, demand)
            asks[n] = max(0.0, ask)
        total = sum(asks.values())
        cap = self.charge_point_cap_w(now)
        if total > cap > 0:
            return {n: ask * cap / total for n, ask in asks.items()}
        if total > cap:
            return dict.fromkeys(asks, 0.0)
        return asks

    def _offered_limit_w(self, connector_id: int, now: float) -> float:
        """The most a connector's load may draw now: the applied limit, or on an AC charger
        the current it signals (after its minimum) on the phases the car uses, no more than
        the car's own onboard charger takes per phase."""
        if self.spec.ac is None:
            return self.applied_limit_w(connector_id, now)
        amps, phases = self.signalled_current(connector_id, now)
        vehicle = self.connectors[connector_id].vehicle
        if vehicle is not None and vehicle.max_current is not None:
            amps = min(amps, vehicle.max_current)
        return amps * self.spec.voltage * phases

    def _phase_currents(self, connector_id: int, power_w: float, now: float) -> tuple[float, ...]:
        """An AC connector's draw per phase of the charger: the power shared evenly by the
        phases the car uses (the first ones), 0 on the others."""
        if self.spec.ac is None:
            return ()
        _, phases = self.signalled_current(connector_id, now)
        amps = power_w / (self.spec.voltage * phases) if power_w > 0 else 0.0
        return tuple(amps if k < phases else 0.0 for k in range(self.spec.phases))

    def _settle(self, now: float) -> list[int]:
        """Refresh the present draws and move connectors between Charging and the suspended
        states (4.9: SuspendedEVSE when the charger offers nothing, SuspendedEV when the car
        takes nothing). Returns the connectors whose status changed."""
        offered = self._offered_w(now)
        changed: list[int] = []
        for n, connector in self.connectors.items():
            drew = connector.power_w
            connector.power_w = offered.get(n, 0.0)
            connector.phase_a = self._phase_currents(n, connector.power_w, now)
            if connector.transaction is None:
                continue
            wanted = self._wanted_status(connector, now)
            if wanted is S.SUSPENDED_EVSE and connector.status is S.CHARGING and drew > 0:
                connector.transaction.pauses += 1
            if wanted is not connector.status:
                event = {
                    S.CHARGING: (
                        ConnectorEvent.EV_RESUME
                        if connector.status is S.SUSPENDED_EV
                        else ConnectorEvent.EVSE_RESUME
                    ),
                    S.SUSPENDED_EV: ConnectorEvent.EV_SUSPEND,
                    S.SUSPENDED_EVSE: ConnectorEvent.EVSE_SUSPEND,
                }[wanted]
                if connector.machine.can(event):
                    connector.machine.fire(event)
                    changed.append(n)
        self.status_changes.extend(changed)
        return changed

    def _wanted_status(self, connector: ConnectorModel, now: float) -> ChargePointStatus:
        if self.spec.ac is not None:
            if self.signalled_current(connector.connector_id, now)[0] <= 0:
                return S.SUSPENDED_EVSE
        elif self.applied_limit_w(connector.connector_id, now) <= 0:
            return S.SUSPENDED_EVSE
        if connector.vehicle is not None and connector.vehicle.demand_kw() <= 0:
            return S.SUSPENDED_EV
        if connector.vehicle is None and connector.demand_w == 0:
            return S.SUSPENDED_EV
        return S.CHARGING

    def take_status_changes(self) -> list[int]:
        """Connectors whose status the physics changed since the last call (for the shell to
        send StatusNotification)."""
        out = list(dict.fromkeys(self.status_changes))
        self.status_changes.clear()
        return out

    def _hardware_w(self, connector_id: int) -> float:
        if connector_id == 0:
            return self.spec.max_power_w
        return self.spec.connector_max_power_w or self.spec.max_power_w

    def _tx_start(self, connector_id: int) -> datetime | None:
        connector = self.connectors.get(connector_id)
        if connector is None or connector.transaction is None:
            return None
        return to_datetime(connector.transaction.started_at)

    # -- configuration (OCPP 1.6 section 9) ------------------------------------------------------

    def _initial_configuration(self) -> dict[str, tuple[str, bool]]:
        spec = self.spec
        features = [f for f in _FEATURES if spec.smart_charging or f != "SmartCharging"]
        units = ",".join(_UNIT_NAMES[u] for u in spec.rate_units)
        return {
            # key: (value, readonly)
            "HeartbeatInterval": (str(spec.heartbeat_interval), False),
            "MeterValueSampleInterval": (str(spec.meter_interval), False),
            "MeterValuesSampledData": (
                "Energy.Active.Import.Register,Power.Active.Import,SoC"
                + (",Current.Import" if spec.ac is not None else ""),
                False,
            ),
            "NumberOfConnectors": (str(spec.connectors), True),
            "SupportedFeatureProfiles": (",".join(features), True),
            "ChargingScheduleAllowedChargingRateUnit": (units, True),
            "ChargeProfileMaxStackLevel": (str(spec.max_stack_level), True),
            "ChargingScheduleMaxPeriods": ("24", True),
            "MaxChargingProfilesInstalled": (str(spec.max_profiles), True),
            "TransactionMessageAttempts": (str(spec.transaction_message_attempts), False),
            "TransactionMessageRetryInterval": (
                str(spec.transaction_message_retry_interval),
                False,
            ),
            "AuthorizeRemoteTxRequests": ("false", False),
            "ConnectionTimeOut": ("60", False),
        }

    def get_configuration(self, keys: Sequence[str] | None) -> tuple[list[KeyValue], list[str]]:
        """GetConfiguration (5.8): known keys with values, and the unknown ones."""
        wanted = list(self.configuration) if not keys else list(keys)
        known = [
            KeyValue(key=k, readonly=self.configuration[k][1], value=self.configuration[k][0])
            for k in wanted
            if k in self.configuration
        ]
        return known, [k for k in wanted if k not in self.configuration]

    def change_configuration(self, key: str, value: str) -> ConfigurationStatus:
        """ChangeConfiguration (5.3): unknown keys NotSupported, read-only ones Rejected, the
        integer keys must hold a non-negative integer."""
        entry = self.configuration.get(key)
        if entry is None:
            return ConfigurationStatus.NOT_SUPPORTED
        if entry[1]:
            return ConfigurationStatus.REJECTED
        if entry[0].isdigit() and not value.isdigit():
            return ConfigurationStatus.REJECTED
        self.configuration[key] = (value, False)
        return ConfigurationStatus.ACCEPTED

    def int_setting(self, key: str) -> int:
        return int(self.configuration[key][0])
