"""Sans-I/O call state of one OCPP-J 1.6 connection, for either end (in the style of h11).

The owner feeds received text to :meth:`Connection.receive` and writes whatever
:meth:`Connection.data_to_send` returns; the connection never reads a clock: every method that
starts or checks a deadline takes ``now`` (monotonic seconds), and the owner calls
:meth:`Connection.expire` at :meth:`Connection.next_deadline`.

Rules implemented:

* OCPP-J 1.6 section 4.1.1: at most one of our CALLs is outstanding; later ones wait in FIFO
  order and go on the wire when the previous one is answered or timed out. A call's deadline
  starts when it is written, not when it is queued.
* Section 4.2.3: a CALL that is invalid but has a readable id is answered with a CALLERROR by the
  connection itself, including an over-long id and an id that is already being handled.
* Answers to the peer's CALLs leave in the order the CALLs arrived, whatever order the owner
  answers them in, so a slow handler cannot reorder replies.
* A frame with no readable id (not JSON, not an array, no string id) cannot be answered in
  OCPP-J 1.6: it is reported as ``FrameRejected`` and nothing is sent. The ``"-1"`` message id
  convention for such errors belongs to OCPP 2.0.1; a 1.6 peer would not expect it.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from protocol.errors import GenericError, InternalError, OcppError
from protocol.events import (
    CallAnswered,
    CallCancelled,
    CallErrored,
    CallReceived,
    CallRejected,
    CallTimedOut,
    Event,
    FrameRejected,
    UnmatchedAnswer,
)
from protocol.frames import (
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    MessageTypeId,
    encode_frame,
    parse_frame,
)
from protocol.messages.base import OcppModel, to_payload
from protocol.registry import ACTIONS, Role, action_of, parse_request, parse_response

__all__ = ["Connection"]


@dataclass(slots=True)
class _OutgoingCall:
    unique_id: str
    action: str
    request: OcppModel
    frame: str
    deadline: float = math.inf


@dataclass(slots=True)
class _IncomingCall:
    unique_id: str
    action: str | None  # None when the CALL was rejected before its action was known
    answer: str | None = None  # the encoded reply, once there is one


def _uuid4() -> str:
    return str(uuid.uuid4())


class Connection:
    """Call state of one connection, as seen from ``role``."""

    def __init__(
        self,
        role: Role,
        call_timeout: float = 10.0,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        if not (math.isfinite(call_timeout) and call_timeout > 0):
            raise ValueError("call_timeout must be a positive number of seconds")
        self.role = role
        self.call_timeout = call_timeout
        self._new_id = id_factory or _uuid4
        self._outbox: list[str] = []
        self._outstanding: _OutgoingCall | None = None
        self._queued: deque[_OutgoingCall] = deque()
        self._incoming: deque[_IncomingCall] = deque()  # arrival order, until flushed
        self._awaiting: dict[str, _IncomingCall] = {}  # unanswered valid CALLs by id
        self._closed = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def pending_calls(self) -> int:
        """Our CALLs without an answer yet: the outstanding one plus the queued ones."""
        return len(self._queued) + (self._outstanding is not None)

    @property
    def outstanding_call(self) -> str | None:
        """The unique id of our CALL on the wire, if any."""
        return self._outstanding.unique_id if self._outstanding else None

    @property
    def awaiting_answers(self) -> int:
        """The peer's valid CALLs that we have not answered yet."""
        return len(self._awaiting)

    @property
    def closed(self) -> bool:
        return self._closed

    def data_to_send(self) -> list[str]:
        """Drain the frames to write, in order."""
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`expire` must next be called, or None when no call is outstanding."""
        return self._outstanding.deadline if self._outstanding else None

    # -- our CALLs -----------------------------------------------------------------------------

    def send_call(self, request: OcppModel, now: float) -> str:
        """Queue a CALL and return its unique id. It is written at once if no other call is
        outstanding, else when the calls before it are done (OCPP-J 1.6 section 4.1.1).

        Raises TypeError/ValueError for a request that ``role`` may not send, RuntimeError after
        :meth:`close` (a call that can never be answered must not vanish silently)."""
        self._check_open()
        spec = action_of(request)
        if self.role not in spec.senders:
            raise ValueError(f"a {self.role.value} does not send {spec.action}")
        unique_id = self._new_id()
        if not isinstance(unique_id, str) or not 0 < len(unique_id) <= MAX_UNIQUE_ID_LENGTH:
            raise ValueError("id_factory must return a non-empty string of at most 36 characters")
        if unique_id == self.outstanding_call or any(
            c.unique_id == unique_id for c in self._queued
        ):
            raise ValueError(f"id_factory returned {unique_id!r} twice")
        frame = encode_frame(Call(unique_id, spec.action, to_payload(request)))
        self._queued.append(_OutgoingCall(unique_id, spec.action, request, frame))
        self._release(now)
        return unique_id

    def expire(self, now: float) -> list[Event]:
        """Time out the outstanding call if its deadline has passed; the next one then goes out."""
        call = self._outstanding
        if call is None or now < call.deadline:
            return []
        self._outstanding = None
        self._release(now)
        return [CallTimedOut(call.unique_id, call.action, call.request)]

    def close(self) -> list[Event]:
        """Forget everything (the transport is gone) and report our unanswered calls."""
        events: list[Event] = []
        if self._outstanding is not None:
            c = self._outstanding
            events.append(CallCancelled(c.unique_id, c.action, c.request, sent=True))
        events += [
            CallCancelled(c.unique_id, c.action, c.request, sent=False) for c in self._queued
        ]
        self._outstanding = None
        self._queued.clear()
        self._incoming.clear()
        self._awaiting.clear()
        self._outbox.clear()
        self._closed = True
        return events

    # -- the peer's CALLs ----------------------------------------------------------------------

    def send_result(self, unique_id: str, response: OcppModel) -> None:
        """Answer the peer's CALL ``unique_id``. TypeError when ``response`` is not the response
        model of that CALL's action, ValueError when no such CALL awaits an answer (bugs).

        After :meth:`close` this does nothing: a handler may well finish (e.g. commit a
        StartTransaction) after its charger went away, and there is nobody left to answer."""
        if self._closed:
            return
        entry = self._take_awaiting(unique_id)
        assert entry.action is not None
        expected = ACTIONS[entry.action].response
        if type(response) is not expected:
            self._awaiting[unique_id] = entry
            raise TypeError(f"{entry.action} is answered with {expected.__name__}")
        self._answer(entry, CallResult(unique_id, to_payload(response)))

    def send_error(self, unique_id: str, error: OcppError) -> None:
        """Answer the peer's CALL ``unique_id`` with a CALLERROR (a no-op after :meth:`close`)."""
        if self._closed:
            return
        self._answer(self._take_awaiting(unique_id), CallError.from_error(unique_id, error))

    # -- input ---------------------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        """Feed one received WebSocket message; returns what happened."""
        if self._closed:
            return []
        try:
            frame = parse_frame(text)
        except OcppError as error:
            return self._on_broken_frame(error, now)
        match frame:
            case None:  # unknown message type: ignored (OCPP-J 1.6 section 4.1.3)
                return []
            case Call():
                return self._on_call(frame)
            case CallResult() | CallError():
                return self._on_answer(frame, now)

    # -- internals -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("connection is closed")

    def _release(self, now: float) -> None:
        if self._outstanding is None and self._queued:
            call = self._queued.popleft()
            call.deadline = now + self.call_timeout
            self._outbox.append(call.frame)
            self._outstanding = call

    def _take_awaiting(self, unique_id: str) -> _IncomingCall:
        entry = self._awaiting.pop(unique_id, None)
        if entry is None:
            raise ValueError(f"no CALL with id {unique_id!r} is awaiting an answer")
        return entry

    def _answer(self, entry: _IncomingCall, frame: CallResult | CallError) -> None:
        entry.answer = encode_frame(frame)
        while self._incoming and self._incoming[0].answer is not None:
            answer = self._incoming.popleft().answer
            assert answer is not None
            self._outbox.append(answer)

    def _reject(self, unique_id: str, error: OcppError, action: str | None = None) -> list[Event]:
        error.unique_id = unique_id
        entry = _IncomingCall(unique_id, None)
        self._incoming.append(entry)
        self._answer(entry, CallError.from_error(unique_id, error))
        return [CallRejected(unique_id, error, action)]

    def _on_broken_frame(self, error: OcppError, now: float) -> list[Event]:
        unique_id, kind = error.unique_id, error.message_type_id
        if unique_id is not None and kind == MessageTypeId.CALL:
            return self._reject(unique_id, error)
        call = self._outstanding
        if call is not None and unique_id == call.unique_id and kind is not None:
            # A mangled answer to our call still ends it; waiting for the timeout gains nothing.
            self._outstanding = None
            self._release(now)
            event = CallErrored(
                call.unique_id,
                call.action,
                call.request,
                error.code,
                error.description,
                dict(error.details),
                local=True,
            )
            return [event]
        return [FrameRejected(error)]

    def _on_call(self, call: Call) -> list[Event]:
        if call.unique_id in self._awaiting:
            # OCPP-J 1.6 section 4.2.3 names this case. The reply queues behind the answer to
            # the first CALL, so the peer sees that answer first.
            return self._reject(
                call.unique_id, GenericError("unique id is already being handled"), call.action
            )
        try:
            request = parse_request(call.action, call.payload, receiver_role=self.role)
        except OcppError as error:
            return self._reject(call.unique_id, error, call.action)
        except Exception:
            # A bug on our side must not kill the connection nor leak internals to the peer.
            return self._reject(call.unique_id, InternalError(), call.action)
        entry = _IncomingCall(call.unique_id, call.action)
        self._incoming.append(entry)
        self._awaiting[call.unique_id] = entry
        return [CallReceived(call.unique_id, call.action, request)]

    def _on_answer(self, frame: CallResult | CallError, now: float) -> list[Event]:
        call = self._outstanding
        if call is None or frame.unique_id != call.unique_id:
            return [UnmatchedAnswer(frame.unique_id, frame)]
        self._outstanding = None
        self._release(now)
        event: Event
        if isinstance(frame, CallError):
            event = CallErrored(
                call.unique_id,
                call.action,
                call.request,
                frame.error_code,
                frame.error_description,
                frame.error_details,
            )
        else:
            try:
                response = parse_response(call.action, frame.payload)
            except OcppError as error:
                event = CallErrored(
                    call.unique_id,
                    call.action,
                    call.request,
                    error.code,
                    error.description,
                    dict(error.details),
                    local=True,
                )
            else:
                event = CallAnswered(call.unique_id, call.action, call.request, response)
        return [event]
