"""What the station core asks of the shell: typed commands, carried out in order.

* ``Reply``: answer the request that carried ``reply_to``. Only ever after the change it
  reports is durable (propose, commit, apply: docs/persistence.md).
* ``Persist``: write these records. With a ``proposal`` number they are a change the core
  has not applied yet: the shell commits them and reports ``CommitDone`` or
  ``CommitFailed`` for that number. Without, they are written behind.
* ``SendProfile`` / ``ReadConfiguration``: a CALL to a charger's current connection
  (``link``); its outcome comes back as ``ProfileAnswered`` / ``ConfigurationRead`` with
  the same ``ref``.
* ``WakeAt``: send ``Tick`` at this time of the clock; each one replaces the previous (it
  only ever comes earlier: a wake-up that finds nothing due is harmless).
* ``ScheduleReallocation``: send ``Reallocate`` soon (the shell waits a few
  milliseconds), so that a burst of changes shares one allocation.
* ``Notice``: something an operator should read in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.records import Record
from controller.core.sessions import Session, StationError
from controller.core.site import ExternalLimit
from protocol.messages import GetConfigurationRequest, SetChargingProfileRequest

# -- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionAnswer:
    """A REST request's session, as it is after the change and the reallocation."""

    session: Session


@dataclass(frozen=True, slots=True)
class TransactionAnswer:
    """StartTransaction.conf: the transaction id and the idTag's status."""

    transaction_id: int
    status: str


@dataclass(frozen=True, slots=True)
class StopAnswer:
    """StopTransaction.conf: the idTag's status when it carried one."""

    id_tag_status: str | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request is refused (REST 4xx)."""

    error: StationError


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The change could not be made durable; nothing changed (REST 503, OCPP InternalError)."""


@dataclass(frozen=True, slots=True)
class LimitAnswer:
    """The external limit in force after the change (None: none)."""

    limit: ExternalLimit | None


Answer = SessionAnswer | TransactionAnswer | StopAnswer | LimitAnswer | Refusal | Unavailable

# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    reply_to: object
    answer: Answer


@dataclass(frozen=True, slots=True)
class Persist:
    records: tuple[Record, ...]
    proposal: int | None = None


@dataclass(frozen=True, slots=True)
class SendProfile:
    charger_id: str
    link: int
    ref: int
    request: SetChargingProfileRequest


@dataclass(frozen=True, slots=True)
class ReadConfiguration:
    charger_id: str
    link: int
    ref: int
    request: GetConfigurationRequest


@dataclass(frozen=True, slots=True)
class WakeAt:
    when: float


@dataclass(frozen=True, slots=True)
class ScheduleReallocation:
    pass


@dataclass(frozen=True, slots=True)
class Notice:
    message: str
    # What it is about, for logs that carry ids (``--log-format json``).
    charger_id: str | None = None
    session_id: str | None = None
    # Something to act on (the default), or only to know.
    warning: bool = True


Command = Reply | Persist | SendProfile | ReadConfiguration | WakeAt | ScheduleReallocation | Notice
