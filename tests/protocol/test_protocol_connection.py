"""Per-connection call state: one outstanding CALL (OCPP-J 1.6 section 4.1.1), matching of
answers, timeouts driven by explicit ``now`` values, ordered replies, and close()."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from protocol import (
    CallAnswered,
    CallCancelled,
    CallErrored,
    CallReceived,
    CallRejected,
    CallTimedOut,
    Connection,
    GenericError,
    Role,
    UnmatchedAnswer,
)
from protocol.messages import (
    AuthorizationStatus,
    BootNotificationRequest,
    BootNotificationResponse,
    ChangeConfigurationRequest,
    ChangeConfigurationResponse,
    ConfigurationStatus,
    GetConfigurationRequest,
    HeartbeatResponse,
    IdTagInfo,
    RegistrationStatus,
    ResetRequest,
    ResetType,
    StatusNotificationResponse,
    StopTransactionResponse,
)

NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def counter() -> Callable[[], str]:
    ids: Iterator[int] = iter(range(1, 1_000_000))
    return lambda: f"m{next(ids)}"


def central_system(timeout: float = 10.0) -> Connection:
    return Connection(Role.CENTRAL_SYSTEM, call_timeout=timeout, id_factory=counter())


def reset() -> ResetRequest:
    return ResetRequest(type=ResetType.SOFT)


def config(key: str) -> ChangeConfigurationRequest:
    return ChangeConfigurationRequest(key=key, value="1")


def test_call_goes_on_the_wire_at_once() -> None:
    conn = central_system()
    unique_id = conn.send_call(reset(), now=100.0)
    assert unique_id == "m1"
    assert conn.data_to_send() == ['[2,"m1","Reset",{"type":"Soft"}]']
    assert conn.next_deadline() == 110.0
    assert conn.pending_calls == 1
    assert conn.outstanding_call == "m1"


def test_second_call_waits_until_the_first_is_answered() -> None:
    conn = central_system()
    first = conn.send_call(config("A"), now=0.0)
    second = conn.send_call(config("B"), now=1.0)
    assert [json.loads(f)[1] for f in conn.data_to_send()] == [first]
    assert conn.pending_calls == 2

    [event] = conn.receive(f'[3,"{first}",{{"status":"Accepted"}}]', now=5.0)
    assert isinstance(event, CallAnswered)
    assert event.action == "ChangeConfiguration"
    assert event.request == config("A")
    assert event.response == ChangeConfigurationResponse(status=ConfigurationStatus.ACCEPTED)
    # The next call is released by the answer, and its deadline starts now.
    assert [json.loads(f)[1] for f in conn.data_to_send()] == [second]
    assert conn.next_deadline() == 15.0
    assert conn.pending_calls == 1


def test_queued_calls_leave_in_fifo_order_also_after_errors_and_timeouts() -> None:
    conn = central_system(timeout=2.0)
    ids = [conn.send_call(config(k), now=0.0) for k in "ABC"]
    sent = [json.loads(f)[1] for f in conn.data_to_send()]
    [errored] = conn.receive(f'[4,"{ids[0]}","NotSupported","",{{}}]', now=1.0)
    assert isinstance(errored, CallErrored)
    assert (errored.error_code, errored.local) == ("NotSupported", False)
    sent += [json.loads(f)[1] for f in conn.data_to_send()]
    assert conn.expire(now=2.9) == []
    [timed_out] = conn.expire(now=3.0)
    assert timed_out == CallTimedOut(ids[1], "ChangeConfiguration", config("B"))
    sent += [json.loads(f)[1] for f in conn.data_to_send()]
    assert sent == ids
    assert conn.next_deadline() == 5.0


def test_timeout_with_nothing_queued() -> None:
    conn = central_system(timeout=10.0)
    assert conn.next_deadline() is None
    assert conn.expire(now=1e9) == []
    unique_id = conn.send_call(reset(), now=50.0)
    assert conn.expire(now=59.999) == []
    assert conn.expire(now=60.0) == [CallTimedOut(unique_id, "Reset", reset())]
    assert conn.next_deadline() is None
    assert conn.pending_calls == 0


def test_late_answer_after_timeout_is_unmatched() -> None:
    conn = central_system()
    unique_id = conn.send_call(reset(), now=0.0)
    conn.expire(now=10.0)
    [event] = conn.receive(f'[3,"{unique_id}",{{"status":"Accepted"}}]', now=11.0)
    assert isinstance(event, UnmatchedAnswer)
    assert event.unique_id == unique_id


def test_answer_with_unknown_id_is_reported_and_keeps_the_call_waiting() -> None:
    conn = central_system()
    unique_id = conn.send_call(reset(), now=0.0)
    [event] = conn.receive('[4,"nobody","GenericError","",{}]', now=1.0)
    assert isinstance(event, UnmatchedAnswer)
    assert event.unique_id == "nobody"
    assert conn.outstanding_call == unique_id


def test_invalid_callresult_becomes_a_local_call_error() -> None:
    conn = central_system()
    unique_id = conn.send_call(reset(), now=0.0)
    conn.send_call(reset(), now=0.0)
    conn.data_to_send()
    [event] = conn.receive(f'[3,"{unique_id}",{{"status":"Maybe"}}]', now=1.0)
    assert isinstance(event, CallErrored)
    assert event.local
    assert event.error_code == "PropertyConstraintViolation"
    assert event.description.startswith("status: Input should be")
    assert len(conn.data_to_send()) == 1  # the next call is released


def test_mangled_answer_to_our_call_ends_it() -> None:
    conn = central_system()
    unique_id = conn.send_call(reset(), now=0.0)
    [event] = conn.receive(f'[3,"{unique_id}"]', now=1.0)
    assert isinstance(event, CallErrored)
    assert (event.error_code, event.local) == ("ProtocolError", True)
    assert conn.pending_calls == 0
    assert conn.data_to_send() == ['[2,"m1","Reset",{"type":"Soft"}]']  # nothing answered back


def test_calls_from_the_peer_are_answered_in_arrival_order() -> None:
    conn = central_system()
    [a] = conn.receive('[2,"a","Heartbeat",{}]', 0.0)
    [b] = conn.receive(
        '[2,"b","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]',
        0.0,
    )
    [c] = conn.receive('[2,"c","NoSuchAction",{}]', 0.0)  # rejected by the connection itself
    assert isinstance(a, CallReceived)
    assert isinstance(b, CallReceived)
    assert isinstance(c, CallRejected)
    assert conn.awaiting_answers == 2
    conn.send_result("b", StatusNotificationResponse())
    assert conn.data_to_send() == []  # held back behind "a"
    conn.send_result("a", HeartbeatResponse(current_time=NOON))
    assert conn.data_to_send() == [
        '[3,"a",{"currentTime":"2024-05-01T12:00:00Z"}]',
        '[3,"b",{}]',
        '[4,"c","NotImplemented","unknown action \'NoSuchAction\'",{}]',
    ]
    assert conn.awaiting_answers == 0


def test_our_calls_do_not_block_answers_to_the_peer() -> None:
    conn = central_system()
    conn.send_call(GetConfigurationRequest(key=["SupportedFeatureProfiles"]), now=0.0)
    conn.data_to_send()
    [event] = conn.receive(
        '[2,"x","StopTransaction",'
        '{"meterStop":10,"timestamp":"2024-05-01T12:00:00Z","transactionId":1}]',
        0.5,
    )
    assert isinstance(event, CallReceived)
    info = IdTagInfo(status=AuthorizationStatus.ACCEPTED)
    conn.send_result("x", StopTransactionResponse(id_tag_info=info))
    assert conn.data_to_send() == ['[3,"x",{"idTagInfo":{"status":"Accepted"}}]']
    assert conn.pending_calls == 1


def test_send_error_answers_a_call() -> None:
    conn = central_system()
    conn.receive('[2,"q","Authorize",{"idTag":"T"}]', 0.0)
    conn.send_error("q", GenericError("try later", {"retry": 5}))
    assert conn.data_to_send() == ['[4,"q","GenericError","try later",{"retry":5}]']


def test_misuse_is_a_programming_error() -> None:
    conn = central_system()
    with pytest.raises(ValueError, match="no CALL"):
        conn.send_result("ghost", HeartbeatResponse(current_time=NOON))
    conn.receive('[2,"h","Heartbeat",{}]', 0.0)
    with pytest.raises(TypeError, match="HeartbeatResponse"):
        conn.send_result("h", StatusNotificationResponse())
    conn.send_result("h", HeartbeatResponse(current_time=NOON))  # still answerable
    with pytest.raises(ValueError, match="does not send BootNotification"):
        conn.send_call(BootNotificationRequest(charge_point_vendor="V", charge_point_model="M"), 0)
    with pytest.raises(TypeError):
        conn.send_call(HeartbeatResponse(current_time=NOON), 0.0)
    with pytest.raises(ValueError):
        Connection(Role.CENTRAL_SYSTEM, call_timeout=0)
    twice = Connection(Role.CENTRAL_SYSTEM, id_factory=lambda: "same")
    twice.send_call(reset(), 0.0)
    with pytest.raises(ValueError, match="twice"):
        twice.send_call(reset(), 0.0)


def test_close_reports_calls_that_never_got_an_answer() -> None:
    conn = central_system()
    first = conn.send_call(config("A"), now=0.0)
    second = conn.send_call(config("B"), now=0.0)
    conn.receive('[2,"p","Heartbeat",{}]', 0.0)
    assert conn.close() == [
        CallCancelled(first, "ChangeConfiguration", config("A"), sent=True),
        CallCancelled(second, "ChangeConfiguration", config("B"), sent=False),
    ]
    assert conn.closed
    assert conn.pending_calls == 0
    assert conn.data_to_send() == []
    assert conn.receive('[3,"m1",{}]', 1.0) == []
    assert conn.close() == []
    conn.send_result("p", HeartbeatResponse(current_time=NOON))  # a late handler: ignored
    assert conn.data_to_send() == []
    with pytest.raises(RuntimeError):
        conn.send_call(reset(), 1.0)


def test_charge_point_side_boots() -> None:
    cp = Connection(Role.CHARGE_POINT, id_factory=counter())
    boot = BootNotificationRequest(charge_point_vendor="VendorX", charge_point_model="X1")
    unique_id = cp.send_call(boot, now=0.0)
    [frame] = cp.data_to_send()
    assert frame == (
        '[2,"m1","BootNotification",{"chargePointVendor":"VendorX","chargePointModel":"X1"}]'
    )
    [event] = cp.receive(
        f'[3,"{unique_id}",{{"status":"Accepted","currentTime":"2024-05-01T12:00:00Z",'
        f'"interval":300}}]',
        now=0.2,
    )
    assert isinstance(event, CallAnswered)
    assert event.response == BootNotificationResponse(
        status=RegistrationStatus.ACCEPTED, current_time=NOON, interval=300
    )
    # A charge point refuses what only a charge point may send.
    [rejected] = cp.receive('[2,"z","StatusNotification",{}]', now=0.3)
    assert rejected.error.code == "NotSupported"  # type: ignore[union-attr]


def test_in_memory_pair_exchange() -> None:
    cs = central_system()
    cp = Connection(Role.CHARGE_POINT, id_factory=counter())
    cp.send_call(BootNotificationRequest(charge_point_vendor="V", charge_point_model="M"), 0.0)
    [frame] = cp.data_to_send()
    [received] = cs.receive(frame, 0.0)
    assert isinstance(received, CallReceived)
    cs.send_result(
        received.unique_id,
        BootNotificationResponse(status=RegistrationStatus.ACCEPTED, current_time=NOON, interval=1),
    )
    cs.send_call(reset(), 0.0)
    frames = cs.data_to_send()
    events = [e for f in frames for e in cp.receive(f, 0.1)]
    assert [type(e) for e in events] == [CallAnswered, CallReceived]
