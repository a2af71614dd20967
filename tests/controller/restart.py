"""What of the core a restart must bring back, as comparable values (docs/persistence.md).

``restart_view(core.records())`` keeps every stored field of every record, and applies what
a restart changes on purpose: a limit on the wire counts as applied (the charger may have
taken it), and the battery resumes its integration from the moment of the restart. Two
cores with the same view are the same station as far as a restart is concerned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.core.fields import compared_fields
from controller.core.records import Record, record_key
from controller.core.state import BatteryRecord, LimitBook


def restart_view(records: Iterable[Record]) -> dict[tuple[str, ...], tuple[Any, ...]]:
    view: dict[tuple[str, ...], tuple[Any, ...]] = {}
    for record in records:
        key = record_key(record)
        assert key is not None, record
        if isinstance(record, LimitBook):
            values = {name: getattr(record, name) for name in compared_fields(LimitBook)}
            values.update(applied=record.held, in_flight=None)
            view[key] = tuple(values.values())
        elif isinstance(record, BatteryRecord):
            view[key] = (record.stored_energy, record.may_discharge)
        else:
            view[key] = tuple(getattr(record, f) for f in compared_fields(type(record)))
    return view
