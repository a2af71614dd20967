"""Station configuration: ``config.json`` loaded once into a frozen, validated model.

Every problem in the file is reported as one line naming the field path
(``chargers[1].maxPower: must be greater than 0``) so an operator can fix the
file without reading a traceback. Unknown keys are rejected too: a typo such
as ``maxPowr`` would otherwise silently fall back to a default.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from allocator import (
    BOUND_CHARGER,
    BOUND_PINNED,
    BOUND_STATION,
    BOUND_VEHICLE,
    ChargerNode,
    GroupNode,
    StationTree,
    Strategy,
)
from allocator.electrical_types import ACCharger, DCCharger, ElectricalStation
from protocol import json_limits
from protocol.json_limits import JsonLimitError

CONFIG_ENV_VAR = "EV_CONTROLLER_CONFIG"
# A JSON list of API tokens added to ``api.tokens`` (docs/security-rest.md).
API_TOKENS_ENV_VAR = "EV_CONTROLLER_API_TOKENS"
DEFAULT_CONFIG_PATH = Path("config.json")
DEFAULT_DB_PATH = Path("data/controller.db")

RESERVED_GROUP_IDS = frozenset({BOUND_VEHICLE, BOUND_CHARGER, BOUND_STATION, BOUND_PINNED})

# Bounded so that sums stay exact in the allocator: no site connection is a TW.
MAX_KW = 1_000_000
PositiveKw = Annotated[float, Field(gt=0, le=MAX_KW, allow_inf_nan=False)]
NonNegativeKw = Annotated[float, Field(ge=0, le=MAX_KW, allow_inf_nan=False)]
Port = Annotated[int, Field(ge=0, le=65535)]
NonEmptyId = Annotated[str, Field(min_length=1, max_length=64)]
# Every value the runtime uses has finite bounds (docs/security-input.md): far beyond any real
# site, and small enough that nothing derived from them overflows or waits forever.
MAX_CHARGERS = 10_000
MAX_ID_TAGS = 100_000
Volts = Annotated[float, Field(gt=0, le=1000)]  # low voltage ends at 1,000 V AC (IEC 60038)
IdTag = Annotated[str, Field(max_length=20)]  # OCPP 1.6 idToken: CiString20


def _sha256_hex(value: str) -> str:
    if len(value) != 64 or any(c not in string.hexdigits for c in value):
        raise PydanticCustomError("sha256_hex", "must be 64 hexadecimal digits: a SHA-256")
    return value.lower()


Sha256Hex = Annotated[str, AfterValidator(_sha256_hex)]


# How every model read from JSON is validated, the configuration and the REST bodies alike:
# camelCase keys, an unknown key is an error, no coercion ("150" is not a number), frozen.
STRICT_JSON = ConfigDict(
    frozen=True,
    extra="forbid",
    strict=True,
    alias_generator=to_camel,
    populate_by_name=True,
    # NaN and Infinity (which JSON does not have, but Python's reader takes) are refused.
    allow_inf_nan=False,
)


class _Model(BaseModel):
    model_config = STRICT_JSON


class BatteryConfig(_Model):
    initial_capacity: NonNegativeKw
    power: NonNegativeKw
    # kWh at which the allocator stops counting on the battery (see controller.core.battery);
    # default: its full power for one OCPP call timeout.
    reserve: NonNegativeKw | None = None


SitePhase = Literal["L1", "L2", "L3"]
Amps = Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]
WeekSeconds = Annotated[float, Field(ge=0, le=7 * 86_400, allow_inf_nan=False)]


class ACElectrical(_Model):
    """An AC charger: limits go out in A per phase (docs/electrical.md, "Configuration")."""

    kind: Literal["AC"]
    phases: Literal[1, 3] = 3
    voltage: Volts = 230.0
    # IEC 61851-1: a car cannot charge below 6 A.
    min_current: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)] = 6.0
    # Per phase; default what maxPower allows (maxPower / (voltage x phases)).
    max_current: Amps | None = None
    current_step: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = 0.1
    # wiring[k]: the site phase the charger's phase k+1 is connected to.
    wiring: Annotated[tuple[SitePhase, ...], Field(min_length=1, max_length=3)] | None = None

    def site_phases(self) -> tuple[str, ...]:
        return self.wiring if self.wiring is not None else ("L1", "L2", "L3")[: self.phases]


class DCElectrical(_Model):
    """A DC charger: whole kW, never between 0 and ``minPower``."""

    kind: Literal["DC"]
    min_power: NonNegativeKw = 0.0


Electrical = Annotated[ACElectrical | DCElectrical, Field(discriminator="kind")]


class ChargerConfig(_Model):
    id: NonEmptyId
    max_power: PositiveKw
    connectors: Annotated[int, Field(ge=1, le=32)]
    # OCPP (docs/ocpp.md): how limits are expressed and who may connect.
    rate_unit: Literal["W", "A"] | None = None
    voltage: Volts = 230.0
    phases: Literal[1, 3] = 3
    password: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    # Or only the password's SHA-256, so that the file does not hold the password itself
    # (docs/security-chargers.md); one or the other, not both.
    password_sha256: Sha256Hex | None = None
    smart_charging: bool = True
    # Phases, minimum current and wiring (docs/electrical.md); None: whole kW as before.
    electrical: Electrical | None = None

    @property
    def ac(self) -> ACElectrical | None:
        return self.electrical if isinstance(self.electrical, ACElectrical) else None

    @property
    def meter_voltage(self) -> float | None:
        """The phase-to-neutral voltage that turns its phase currents into power; None for
        a DC charger, whose currents are not AC phases."""
        if isinstance(self.electrical, DCElectrical):
            return None
        ac = self.ac
        return ac.voltage if ac is not None else self.voltage


class GroupConfig(_Model):
    id: NonEmptyId
    # One of the two at least (checked in cross_field_problems).
    max_power: PositiveKw | None = None
    # A per phase (docs/electrical.md).
    max_current: Amps | None = None
    chargers: Annotated[tuple[NonEmptyId, ...], Field(max_length=MAX_CHARGERS)] = ()
    groups: Annotated[tuple[GroupConfig, ...], Field(max_length=MAX_CHARGERS)] = ()


class AllocationConfig(_Model):
    strategy: Strategy = Strategy.FAIR
    # Learn what OCPP vehicles can take from what they draw (controller.core.demand).
    learn_demand: bool = True
    # Which sessions run when not all can at their minimum (docs/electrical.md, "Rotation").
    rotation_period: Annotated[WeekSeconds, Field(gt=0)] = 900.0
    # Default: twice the rotation period.
    max_pause: WeekSeconds | None = None

    @property
    def pause_limit(self) -> float:
        return 2 * self.rotation_period if self.max_pause is None else self.max_pause


FilePath = Annotated[str, Field(min_length=1, max_length=4096)]


class TlsConfig(_Model):
    """PEM files of a TLS port (docs/security-connections.md); read again on SIGHUP."""

    cert: FilePath
    key: FilePath
    # With it, a client must present a certificate signed by it (OCPP security profile 3).
    client_ca: FilePath | None = None


class ServerConfig(_Model):
    host: Annotated[str, Field(max_length=253)] = "0.0.0.0"  # the longest DNS name
    rest_port: Port = 4567
    ocpp_port: Port = 9000
    ocpp_path: Annotated[str, Field(max_length=200)] = "/ocpp"
    # TLS on both ports; rest_tls, when given, is the REST port's instead.
    tls: TlsConfig | None = None
    rest_tls: TlsConfig | None = None
    # Seconds a connection may take to complete its HTTP request or WebSocket upgrade.
    handshake_timeout: Annotated[float, Field(ge=0.1, le=300, allow_inf_nan=False)] = 10.0
    # Open connections per port; default 4 per configured charger + 256 (controller.listener).
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class OcppConfig(_Model):
    heartbeat_interval: Annotated[int, Field(ge=1, le=86_400)] = 300
    call_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Per-connector power chargers fall back to when they lose the controller.
    failsafe_power: NonNegativeKw | None = None
    # After this long offline a charger's sessions are budgeted at the failsafe.
    offline_after: Annotated[float, Field(ge=0, le=7 * 86_400)] = 900.0
    authorized_id_tags: Annotated[tuple[IdTag, ...], Field(max_length=MAX_ID_TAGS)] | None = None
    # What one charger may cost (docs/security-chargers.md): every charger must have a
    # password; its unsent bytes; the messages it may send per second (bursts of 200).
    require_auth: bool = False
    max_buffered_bytes: Annotated[int, Field(ge=16 * 1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    max_messages_per_second: Annotated[int, Field(ge=1, le=10_000)] = 50


class ApiTokenConfig(_Model):
    """One REST API token. Only its SHA-256 is kept: the config file is no secret."""

    name: NonEmptyId
    role: Literal["read", "operate"]
    sha256: Sha256Hex


ApiTokens = Annotated[tuple[ApiTokenConfig, ...], Field(max_length=1000)]
_ORIGIN = re.compile(r"https?://[^\s/?#*]+")


def _origin(value: str) -> str:
    # Compared as is with the Origin header a browser sends: scheme, host and port only.
    if not _ORIGIN.fullmatch(value):
        raise ValueError("must be an origin such as 'https://ops.example.com:8443' (no path)")
    return value


Origin = Annotated[str, Field(max_length=255), AfterValidator(_origin)]


class ApiConfig(_Model):
    # Without any token, reads are open and changes come only from loopback clients.
    tokens: ApiTokens = ()
    # Web origins allowed to call the API from a browser (CORS); none by default.
    cors_origins: Annotated[tuple[Origin, ...], Field(max_length=100)] = ()
    # How long GET /healthz waits for the database before answering 503.
    health_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0


class DatabaseConfig(_Model):
    path: Annotated[str, Field(min_length=1, max_length=4096)] = str(DEFAULT_DB_PATH)
    # FULL: a committed change survives a power cut; NORMAL: only a process crash.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Stopped sessions and journal lines older than this are deleted, once a day.
    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 400


def _not_zero(value: float) -> float:
    if value == 0:
        raise PydanticCustomError("not_zero", "must not be 0")
    return value


class RegisterConfig(_Model):
    """Where a meter keeps one value (docs/site.md, "Register maps")."""

    address: Annotated[int, Field(ge=0, le=65535)]
    table: Literal["input", "holding"] = "input"
    type: Literal["float32", "int32", "int16"] = "float32"
    # What one unit of the register is in kW (power) or A (current): 0.001 for a meter in W;
    # negative for a meter that counts export as positive.
    scale: Annotated[
        float, Field(ge=-1e6, le=1e6, allow_inf_nan=False), AfterValidator(_not_zero)
    ] = 1.0
    # Of the two registers of a 32-bit value, which comes first: "big", the high word.
    word_order: Literal["big", "little"] = "big"


class RegisterMap(_Model):
    power: RegisterConfig
    # L1, L2, L3: for the per-phase budget (gridCurrentLimit).
    current: tuple[RegisterConfig, RegisterConfig, RegisterConfig] | None = None


class ModbusMeterConfig(_Model):
    """A meter read over Modbus TCP."""

    type: Literal["modbus"]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    unit: Annotated[int, Field(ge=0, le=247)] = 1
    interval: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False)] = 1.0
    # A preset of controller.meter.presets, or an explicit map: exactly one of the two.
    model: NonEmptyId | None = None
    registers: RegisterMap | None = None

    @model_validator(mode="after")
    def _model_or_registers(self) -> ModbusMeterConfig:
        from controller.meter.presets import PRESETS

        if (self.model is None) == (self.registers is None):
            raise PydanticCustomError(
                "meter_map", "give either model (a preset) or registers (a map), not both"
            )
        if self.model is not None and self.model not in PRESETS:
            raise PydanticCustomError(
                "meter_model",
                "model: unknown meter '{model}'; presets: {presets}",
                {"model": self.model, "presets": ", ".join(sorted(PRESETS))},
            )
        return self

    @property
    def register_map(self) -> RegisterMap:
        from controller.meter.presets import PRESETS

        if self.registers is not None:
            return self.registers
        assert self.model is not None
        return PRESETS[self.model]


class PushMeterConfig(_Model):
    """A meter whose readings an integration posts to ``POST /station/site-meter``."""

    type: Literal["push"]


Seconds = Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)]


class SiteConfig(_Model):
    """The rest of the site behind the grid connection (docs/site.md)."""

    meter: Annotated[ModbusMeterConfig | PushMeterConfig, Field(discriminator="type")] | None = None
    # A raise of the budget waits until the higher load has not been seen for this long.
    hold_seconds: Seconds = 10.0
    # kW kept free below the connection's limit; default 2 % of gridCapacity.
    margin: NonNegativeKw | None = None
    # No valid reading for this long: the budget falls to fallbackPower.
    meter_timeout: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 10.0
    # Default: the total of the chargers' failsafe limits.
    fallback_power: NonNegativeKw | None = None


class StationConfig(_Model):
    station_id: NonEmptyId
    grid_capacity: PositiveKw
    # A per site phase, in addition to gridCapacity in kW (docs/site.md, "Per phase").
    grid_current_limit: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] | None = None
    # At least one charger: checked in cross_field_problems, because pydantic
    # reports a too-short tuple whenever one of its items is invalid.
    chargers: Annotated[tuple[ChargerConfig, ...], Field(max_length=MAX_CHARGERS)]
    battery: BatteryConfig | None = None
    groups: Annotated[tuple[GroupConfig, ...], Field(max_length=MAX_CHARGERS)] = ()
    allocation: AllocationConfig = AllocationConfig()
    server: ServerConfig = ServerConfig()
    ocpp: OcppConfig = OcppConfig()
    database: DatabaseConfig = DatabaseConfig()
    api: ApiConfig = ApiConfig()
    site: SiteConfig = SiteConfig()

    @property
    def battery_reserve(self) -> float:
        if self.battery is None:
            return 0.0
        if self.battery.reserve is not None:
            return self.battery.reserve
        return self.battery.power * self.ocpp.call_timeout / 3600.0

    # Derived once: a boot storm of thousands of chargers looks these up per message.
    _by_id: dict[str, ChargerConfig] = PrivateAttr(default_factory=dict)
    _total_connectors: int = PrivateAttr(default=0)

    def model_post_init(self, context: Any, /) -> None:
        self._by_id = {c.id: c for c in self.chargers}
        self._total_connectors = sum(c.connectors for c in self.chargers)

    def charger(self, charger_id: str) -> ChargerConfig | None:
        return self._by_id.get(charger_id)

    @property
    def total_connectors(self) -> int:
        return self._total_connectors

    def failsafe_power_per_connector(self, charger: ChargerConfig) -> float:
        """kW per connector that a charger applies while the controller is away.

        Default: the grid shared evenly over every connector of the station,
        so that all connectors at their failsafe still fit the grid, capped at
        the charger's own per-connector share (docs/ocpp.md, "The failsafe default").
        """
        share = charger.max_power / charger.connectors
        if self.ocpp.failsafe_power is not None:
            return min(self.ocpp.failsafe_power, share)
        if charger.ac is not None:
            # A car starts drawing under it before its StartTransaction reaches the
            # controller: only 0 is safe with any number of new cars at once
            # (docs/electrical.md, "What goes to the charger").
            return 0.0
        return min(float(math.floor(self.grid_capacity / self.total_connectors)), share)

    @property
    def site_margin(self) -> float:
        """kW kept free below the connection's limit when a meter is read (docs/site.md)."""
        if self.site.margin is not None:
            return self.site.margin
        return 0.02 * self.grid_capacity

    @property
    def site_fallback_power(self) -> float:
        """The charging budget while the meter is silent: by default what every connector
        at its failsafe limit would draw (docs/site.md, "A silent meter")."""
        if self.site.fallback_power is not None:
            return self.site.fallback_power
        return sum(self.failsafe_power_per_connector(c) * c.connectors for c in self.chargers)

    def tree(self) -> StationTree:
        def group_node(group: GroupConfig) -> GroupNode:
            return GroupNode(
                id=group.id,
                # Without maxPower a group limits only current: its kW limit is none that
                # could bind (every kW figure of the configuration is at most MAX_KW).
                max_power=group.max_power if group.max_power is not None else float(MAX_KW),
                chargers=group.chargers,
                groups=tuple(group_node(g) for g in group.groups),
            )

        return StationTree(
            chargers=tuple(ChargerNode(c.id, c.max_power) for c in self.chargers),
            groups=tuple(group_node(g) for g in self.groups),
        )

    @property
    def has_electrical_model(self) -> bool:
        """Whether limits are allocated with phases and minimums (docs/electrical.md); without
        any of its keys every limit stays whole kW, exactly as before."""
        return (
            self.grid_current_limit is not None
            or any(c.electrical is not None for c in self.chargers)
            or any(g.max_current is not None for _, g in _walk_groups(self.groups, "groups"))
        )

    def electrical_station(self) -> ElectricalStation:
        chargers: dict[str, ACCharger | DCCharger] = {}
        for charger in self.chargers:
            data = charger.electrical
            if isinstance(data, ACElectrical):
                chargers[charger.id] = ACCharger(
                    phases=data.phases,
                    voltage=data.voltage,
                    min_current=data.min_current,
                    # Per phase, whichever phases a car uses: a 1-phase car on a 22 kW
                    # 3-phase charger still gets at most its 32 A, not 22 kW on one phase.
                    max_current=ac_max_current(charger, data),
                    current_step=data.current_step,
                    wiring=data.wiring,
                )
            elif isinstance(data, DCElectrical):
                chargers[charger.id] = DCCharger(min_power=data.min_power)
        return ElectricalStation(
            tree=self.tree(),
            chargers=chargers,
            grid_current_limit=self.grid_current_limit,
            group_max_current={
                g.id: g.max_current
                for _, g in _walk_groups(self.groups, "groups")
                if g.max_current is not None
            },
        )


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one line per field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def field_path(loc: Iterable[int | str]) -> str:
    """``("chargers", 1, "maxPower")`` -> ``chargers[1].maxPower``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(root)"


def describe_error(error: Any) -> str:
    """A short sentence for one pydantic error, in the words an operator expects."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    simple = {
        "missing": "is required",
        "extra_forbidden": "is not a known field",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "float_type": "must be a number",
        "string_type": "must be a string",
        "bool_type": "must be true or false",
        "dict_type": "must be an object",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
        "tuple_type": "must be a list",
        "list_type": "must be a list",
        "finite_number": "must be a finite number",
        "int_from_float": "must be a whole number",
    }
    if kind in simple:
        return simple[kind]
    bounds = {
        "greater_than": ("must be greater than", "gt"),
        "greater_than_equal": ("must be at least", "ge"),
        "less_than": ("must be less than", "lt"),
        "less_than_equal": ("must be at most", "le"),
        "too_short": ("must have at least {} item(s)", "min_length"),
        "too_long": ("must have at most {} item(s)", "max_length"),
        "string_too_short": ("must have at least {} character(s)", "min_length"),
        "string_too_long": ("must have at most {} character(s)", "max_length"),
    }
    if kind in bounds:
        text, key = bounds[kind]
        value = ctx.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return text.format(value) if "{}" in text else f"{text} {value}"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "union_tag_invalid":
        return f"type: must be one of {ctx.get('expected_tags', 'the known types')}"
    if kind == "union_tag_not_found":
        return f"needs a {ctx.get('discriminator', 'type')}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', 'the allowed values')}"
    message: str = error.get("msg", "is invalid")
    return message[0].lower() + message[1:] if message else "is invalid"


def validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for item in error.errors():
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = field_path(loc)
        if prefix:
            path = prefix if path == "(root)" else prefix + (path if path[0] == "[" else "." + path)
        problems.append(f"{path}: {describe_error(item)}")
    return problems


def _walk_groups(groups: Sequence[GroupConfig], path: str) -> Iterator[tuple[str, GroupConfig]]:
    for index, group in enumerate(groups):
        here = f"{path}[{index}]"
        yield here, group
        yield from _walk_groups(group.groups, f"{here}.groups")


def cross_field_problems(config: StationConfig) -> list[str]:
    """Rules pydantic cannot express per field: uniqueness and group membership."""
    problems: list[str] = []
    if not config.chargers:
        problems.append("chargers: must list at least one charger")
    charger_ids: set[str] = set()
    for index, charger in enumerate(config.chargers):
        if charger.id in charger_ids:
            problems.append(f"chargers[{index}].id: duplicate charger id {charger.id!r}")
        charger_ids.add(charger.id)
    problems += charger_password_problems(config)

    group_ids: set[str] = set()
    owner: dict[str, str] = {}
    for path, group in _walk_groups(config.groups, "groups"):
        if group.id in group_ids or group.id in charger_ids:
            problems.append(f"{path}.id: duplicate id {group.id!r}")
        elif group.id in RESERVED_GROUP_IDS:
            # A session's limitedBy is a group id or one of these words: keep them apart.
            problems.append(f"{path}.id: {group.id!r} is reserved, choose another id")
        group_ids.add(group.id)
        for index, charger_id in enumerate(group.chargers):
            if charger_id not in charger_ids:
                problems.append(f"{path}.chargers[{index}]: unknown charger {charger_id!r}")
            elif charger_id in owner:
                problems.append(
                    f"{path}.chargers[{index}]: charger {charger_id!r} already belongs "
                    f"to group {owner[charger_id]!r}"
                )
            else:
                owner[charger_id] = group.id
    for path, group in _walk_groups(config.groups, "groups"):
        if group.max_power is None and group.max_current is None:
            problems.append(f"{path}: needs maxPower, maxCurrent or both")
    problems += electrical_problems(config)
    problems += token_problems([(f"api.tokens[{i}]", t) for i, t in enumerate(config.api.tokens)])
    return problems


def electrical_problems(config: StationConfig) -> list[str]:
    """What the electrical model needs beyond each field's own range (docs/electrical.md)."""
    problems: list[str] = []
    for index, charger in enumerate(config.chargers):
        path = f"chargers[{index}]"
        data = charger.electrical
        if isinstance(data, DCElectrical):
            if math.ceil(data.min_power) > charger.max_power:
                problems.append(f"{path}.electrical.minPower: must be at most maxPower")
            continue
        if data is None:
            continue
        if charger.rate_unit == "W":
            problems.append(f"{path}.rateUnit: an AC charger (electrical) gets its limits in A")
        for key, own in (("phases", data.phases), ("voltage", data.voltage)):
            if key in charger.model_fields_set and getattr(charger, key) != own:
                problems.append(f"{path}.{key}: differs from electrical.{key}")
        sites = data.site_phases()
        if len(sites) != data.phases or len(set(sites)) != len(sites):
            problems.append(
                f"{path}.electrical.wiring: must name {data.phases} different site phase(s)"
            )
        most = ac_max_current(charger, data)
        if most < data.min_current:
            what = "maxCurrent" if data.max_current is not None else "maxPower"
            problems.append(
                f"{path}.electrical.minCurrent: above the {most:g} A per phase its {what} allows"
            )
        failsafe = config.ocpp.failsafe_power
        if failsafe is not None:
            amps = ac_failsafe_current(config, charger, data)
            if 0 < amps < data.min_current:
                problems.append(
                    f"ocpp.failsafePower: {failsafe:g} kW is {amps:g} A per phase on charger "
                    f"{charger.id!r}, between 0 and its minCurrent {data.min_current:g} A"
                )
    return problems


def ac_max_current(charger: ChargerConfig, data: ACElectrical) -> float:
    """A per phase an AC charger may be sent: its maxCurrent, else what maxPower allows."""
    allowed = charger.max_power * 1000.0 / (data.voltage * data.phases)
    return min(data.max_current, allowed) if data.max_current is not None else allowed


def ac_failsafe_current(config: StationConfig, charger: ChargerConfig, data: ACElectrical) -> float:
    """The TxDefaultProfile of an AC charger, in A per phase, whole steps rounded down."""
    kw = config.failsafe_power_per_connector(charger)
    steps = math.floor(kw * 1000.0 / (data.voltage * data.phases) / data.current_step + 1e-9)
    return steps * data.current_step


def token_problems(tokens: Sequence[tuple[str, ApiTokenConfig]]) -> list[str]:
    """Token names are unique (the log names them), and so are the tokens themselves:
    one token with two roles would be ambiguous."""
    problems: list[str] = []
    names: set[str] = set()
    hashes: dict[str, str] = {}
    for path, token in tokens:
        if token.name in names:
            problems.append(f"{path}.name: duplicate token name {token.name!r}")
        names.add(token.name)
        if token.sha256 in hashes:
            problems.append(f"{path}.sha256: the same token as {hashes[token.sha256]!r}")
        hashes.setdefault(token.sha256, token.name)
    return problems


_TOKEN_LIST: TypeAdapter[tuple[ApiTokenConfig, ...]] = TypeAdapter(ApiTokens)


def with_environment_tokens(
    config: StationConfig, environ: Mapping[str, str] = os.environ
) -> StationConfig:
    """``config`` with the tokens of ``EV_CONTROLLER_API_TOKENS`` added to ``api.tokens``;
    ConfigError naming ``EV_CONTROLLER_API_TOKENS[i].field`` for a bad one."""
    text = environ.get(API_TOKENS_ENV_VAR)
    if text is None or not text.strip():
        return config
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            [f"{API_TOKENS_ENV_VAR}: not valid JSON (column {error.colno}: {error.msg})"]
        ) from None
    try:
        added = _TOKEN_LIST.validate_json(text)
    except ValidationError as error:
        raise ConfigError(validation_problems(error, API_TOKENS_ENV_VAR)) from None
    everything = [(f"api.tokens[{i}]", t) for i, t in enumerate(config.api.tokens)]
    everything += [(f"{API_TOKENS_ENV_VAR}[{i}]", t) for i, t in enumerate(added)]
    problems = token_problems(everything)
    if problems:
        raise ConfigError(problems)
    api = config.api.model_copy(update={"tokens": config.api.tokens + added})
    return config.model_copy(update={"api": api})


def charger_password_problems(config: StationConfig) -> list[str]:
    """A charger has one password (in clear or as its SHA-256), and every charger has one
    when ``ocpp.requireAuth`` says so."""
    problems: list[str] = []
    for index, charger in enumerate(config.chargers):
        if charger.password is not None and charger.password_sha256 is not None:
            problems.append(
                f"chargers[{index}].passwordSha256: give password or passwordSha256, not both"
            )
        elif config.ocpp.require_auth and (
            charger.password is None and charger.password_sha256 is None
        ):
            problems.append(
                f"chargers[{index}]: needs a password or passwordSha256 (ocpp.requireAuth is true)"
            )
    return problems


# Problems of the file as a whole, not of one field: load_config names the file in them.
_OVER_LIMIT = "JSON over a limit"
_WHOLE_FILE = ("not valid JSON", _OVER_LIMIT)


def parse_config(text: str | bytes) -> StationConfig:
    """Validate the file's JSON text; raise ConfigError listing every problem.

    JSON mode matters: strict validation then accepts JSON arrays for tuples
    and strings for enums while still refusing ``"400"`` for a number.
    """
    try:
        # NaN and infinities are let through here so that validation names their field.
        data = json_limits.loads(text, finite=False)
    except JsonLimitError as error:
        raise ConfigError([f"{_OVER_LIMIT}: {error}"]) from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            [f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"]
        ) from None
    except ValueError:  # UnicodeDecodeError
        raise ConfigError(["not valid JSON (not UTF-8 text)"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["(root): must be a JSON object"])
    try:
        config = StationConfig.model_validate_json(text)
    except ValidationError as error:
        raise ConfigError(validation_problems(error)) from None
    problems = cross_field_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def config_from_dict(data: dict[str, Any]) -> StationConfig:
    return parse_config(json.dumps(data))


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> StationConfig:
    """The file at ``path``, plus the API tokens of the environment."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read file ({error.strerror})"]) from None
    try:
        config = parse_config(text)
    except ConfigError as error:
        if len(error.problems) == 1 and error.problems[0].startswith(_WHOLE_FILE):
            raise ConfigError([f"{path}: {error.problems[0]}"]) from None
        raise
    return with_environment_tokens(config, environ)
