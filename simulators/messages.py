"""The charger's own OCPP requests, built from its model (pure: the time comes in as ``now``)."""

from __future__ import annotations

from protocol.messages import (
    BootNotificationRequest,
    ChargePointErrorCode,
    ChargePointStatus,
    Location,
    Measurand,
    MeterValue,
    MeterValuesRequest,
    Phase,
    ReadingContext,
    Reason,
    SampledValue,
    StartTransactionRequest,
    StatusNotificationRequest,
    StopTransactionRequest,
    UnitOfMeasure,
)
from simulators.charger import ChargerSpec, ConnectorModel, LocalTransaction
from simulators.profiles import to_datetime

__all__ = [
    "boot_notification",
    "meter_sample",
    "meter_values",
    "start_transaction",
    "status_notification",
    "stop_transaction",
]


def boot_notification(spec: ChargerSpec) -> BootNotificationRequest:
    return BootNotificationRequest(
        charge_point_vendor=spec.vendor,
        charge_point_model=spec.model,
        charge_point_serial_number=spec.charge_point_id[:25],
        firmware_version=spec.firmware_version,
    )


def status_notification(
    connector_id: int, status: ChargePointStatus, now: float
) -> StatusNotificationRequest:
    return StatusNotificationRequest(
        connector_id=connector_id,
        error_code=ChargePointErrorCode.NO_ERROR,
        status=status,
        timestamp=to_datetime(now),
    )


_PHASES = (Phase.L1, Phase.L2, Phase.L3)


def meter_sample(connector: ConnectorModel, context: ReadingContext, now: float) -> MeterValue:
    """Power, energy register, on an AC charger the current on each of its own phases (L1 to
    L3 are the charger's phases 1 to 3, not the site's: the wiring is the installer's), and,
    with a vehicle, its state of charge (4.7)."""
    values = [
        SampledValue(
            value=f"{connector.power_w:.1f}",
            context=context,
            measurand=Measurand.POWER_ACTIVE_IMPORT,
            location=Location.OUTLET,
            unit=UnitOfMeasure.W,
        ),
        SampledValue(
            value=f"{connector.meter_wh:.1f}",
            context=context,
            measurand=Measurand.ENERGY_ACTIVE_IMPORT_REGISTER,
            location=Location.OUTLET,
            unit=UnitOfMeasure.WH,
        ),
    ]
    values += [
        SampledValue(
            value=f"{amps:.2f}",
            context=context,
            measurand=Measurand.CURRENT_IMPORT,
            phase=phase,
            location=Location.OUTLET,
            unit=UnitOfMeasure.A,
        )
        for phase, amps in zip(_PHASES, connector.phase_a, strict=False)
    ]
    if connector.vehicle is not None:
        values.append(
            SampledValue(
                value=f"{connector.vehicle.soc * 100:.1f}",
                context=context,
                measurand=Measurand.SOC,
                location=Location.EV,
                unit=UnitOfMeasure.PERCENT,
            )
        )
    return MeterValue(timestamp=to_datetime(now), sampled_value=values)


def meter_values(tx: LocalTransaction, sample: MeterValue) -> MeterValuesRequest:
    return MeterValuesRequest(
        connector_id=tx.connector_id, transaction_id=tx.transaction_id, meter_value=[sample]
    )


def start_transaction(tx: LocalTransaction) -> StartTransactionRequest:
    return StartTransactionRequest(
        connector_id=tx.connector_id,
        id_tag=tx.id_tag,
        meter_start=tx.meter_start,
        timestamp=to_datetime(tx.started_at),
    )


def stop_transaction(tx: LocalTransaction, reason: Reason) -> StopTransactionRequest:
    """StopTransaction.req with meterStop (4.10), of a transaction that has ended."""
    if tx.meter_stop is None or tx.stopped_at is None:
        raise ValueError(f"transaction {tx.local_id} has not ended")
    return StopTransactionRequest(
        id_tag=tx.id_tag,
        meter_stop=tx.meter_stop,
        timestamp=to_datetime(tx.stopped_at),
        # -1 only if the central system never gave the transaction an id.
        transaction_id=tx.transaction_id if tx.transaction_id is not None else -1,
        reason=reason,
    )
