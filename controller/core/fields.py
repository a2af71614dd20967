"""Which fields of the core's state reach the database, and which a restart rebuilds.

Every state class of the core is a dataclass whose fields are, by default, stored: the
repository has one column per field, named like the field, and recovery reads them back.
Two markers say otherwise:

* ``TRANSIENT``: not stored. It describes a connection or a call in progress, which a
  restart ends anyway (``docs/persistence.md`` lists each and what it restarts from).
* ``DERIVED``: stored, for the history, but recomputed at recovery (a session's
  allocation follows from everything else).

The round-trip test walks these markers, so a field added without a column fails it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

TRANSIENT: dict[str, Any] = {"stored": False}
DERIVED: dict[str, Any] = {"derived": True}


def stored_fields(cls: type[Any]) -> tuple[str, ...]:
    """The names of the fields that have a column, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("stored", True))


def compared_fields(cls: type[Any]) -> tuple[str, ...]:
    """Stored fields that recovery must bring back exactly (not derived)."""
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.metadata.get("stored", True) and not f.metadata.get("derived", False)
    )
