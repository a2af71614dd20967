"""Whatever arrives, parsing yields a frame/message/event or one of our OcppError subclasses.

Inputs: arbitrary text and bytes, arbitrary JSON structures, frame-shaped arrays, and the valid
corpus frames mutated at random places (values replaced, keys dropped or added, text cut).
Anything else escaping is a bug. On top of that: every frame the connection writes parses back,
and no bug hides behind the connection's InternalError safety net.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    ACTIONS,
    ERROR_CLASSES,
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallAnswered,
    CallCancelled,
    CallError,
    CallErrored,
    CallReceived,
    CallRejected,
    CallResult,
    CallTimedOut,
    Connection,
    FrameRejected,
    OcppError,
    Role,
    UnmatchedAnswer,
    parse_frame,
    parse_request,
    parse_response,
    to_payload,
)
from protocol.messages import ResetRequest, ResetType
from tests.protocol.ocpp_corpus import CALLS, RESULTS

# Seeded (derandomize): the same examples on every run, in CI too.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
EVENTS = (
    CallReceived,
    CallRejected,
    FrameRejected,
    CallAnswered,
    CallErrored,
    UnmatchedAnswer,
    CallTimedOut,
    CallCancelled,
)
CORPUS = [*CALLS.values(), *RESULTS.values()]

# Strings that are valid somewhere, so that mutations often get past the first check.
PLAUSIBLE = st.sampled_from(
    [
        *ACTIONS,
        "Accepted",
        "Charging",
        "NoError",
        "TxProfile",
        "W",
        "Wh",
        "Hertz",
        "2024-05-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "not a time",
        "x" * 37,
        "",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | PLAUSIBLE
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=15,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated_frames(draw: st.DrawFn) -> str:
    frame = json.loads(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(frame)))
        if not path:
            frame = draw(JSON)
            continue
        parent = frame
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "delete", "add"]))
        if how == "replace":
            parent[path[-1]] = draw(JSON)
        elif how == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12) | PLAUSIBLE)] = draw(JSON)
        else:
            parent.insert(path[-1], draw(JSON))
    text = json.dumps(frame)
    if draw(st.booleans()):
        cut = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:cut] + draw(st.text(max_size=3)) + text[cut + 1 :]
    return text


def _deep(levels: int) -> Any:
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


# Around the JSON limits (docs/security-input.md): nesting near 64 levels, integers near 100
# digits, numbers near the int32 and 2**53 bounds.
NEAR_LIMITS = (
    st.integers(min_value=55, max_value=70).map(_deep)
    | st.integers(min_value=95, max_value=105).map(lambda n: int("9" * n))
    | st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**53 - 1, 2**53, 1e308])
)


@st.composite
def frames_near_limits(draw: st.DrawFn) -> str:
    frame = json.loads(draw(st.sampled_from(CORPUS)))
    path = draw(st.sampled_from(_paths(frame)[1:]))
    parent = frame
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = draw(NEAR_LIMITS)
    return json.dumps(frame)


frame_shaped = st.builds(
    lambda items: json.dumps(items),
    st.tuples(st.sampled_from([2, 3, 4, 5, True]), st.text(max_size=40) | PLAUSIBLE).flatmap(
        lambda head: st.lists(JSON, max_size=4).map(lambda rest: [*head, *rest])
    ),
)

ANY_INPUT = (
    st.text()
    | st.binary()
    | JSON.map(json.dumps)
    | frame_shaped
    | mutated_frames()
    | frames_near_limits()
    | st.sampled_from(CORPUS)
)


def _check_error(error: OcppError) -> None:
    assert type(error) in ERROR_CLASSES.values()
    assert isinstance(error.description, str)
    assert len(error.description) < 1000
    assert isinstance(error.details, dict)


def _parse_everything(text: str | bytes) -> None:
    try:
        frame = parse_frame(text)
    except OcppError as error:
        _check_error(error)
        return
    assert frame is None or isinstance(frame, Call | CallResult | CallError)
    if isinstance(frame, Call):
        for role in Role:
            try:
                model = parse_request(frame.action, frame.payload, receiver_role=role)
            except OcppError as error:
                _check_error(error)
            else:
                # What we accept, we can write back, and read again as the same message.
                payload = to_payload(model)
                assert parse_request(frame.action, payload, receiver_role=role) == model
    elif isinstance(frame, CallResult):
        for action in ACTIONS:
            try:
                model = parse_response(action, frame.payload)
            except OcppError as error:
                _check_error(error)
            else:
                assert parse_response(action, to_payload(model)) == model


@FUZZ
@given(ANY_INPUT)
def test_parsing_never_raises_anything_but_ocpp_errors(text: str | bytes) -> None:
    _parse_everything(text)


def _check_written(text: str) -> None:
    text.encode("utf-8")  # always sendable as a WebSocket text frame
    try:
        assert isinstance(parse_frame(text), Call | CallResult | CallError)
    except OcppError as error:
        # The one exception: a CALLERROR echoing a peer's over-long id (OCPP-J 1.6 s. 4.2.3).
        assert error.unique_id is not None
        assert len(error.unique_id) > MAX_UNIQUE_ID_LENGTH
        assert json.loads(text)[0] == 4


@FUZZ
@given(st.lists(ANY_INPUT, min_size=1, max_size=6), st.sampled_from(list(Role)))
def test_connection_survives_any_input(frames: list[str | bytes], role: Role) -> None:
    # Ids taken from the corpus so that mutated answers sometimes match our outstanding call.
    ids = iter(["19223201", "s2", "r4", "c3", "h1", "a1", "m1", "zz"])
    conn = Connection(role, call_timeout=5.0, id_factory=lambda: next(ids))
    if role is Role.CENTRAL_SYSTEM:
        conn.send_call(ResetRequest(type=ResetType.HARD), now=0.0)
        conn.send_call(ResetRequest(type=ResetType.SOFT), now=0.0)
    now = 0.0
    for text in frames:
        now += 1.0
        events = conn.receive(text, now) + conn.expire(now)
        for event in events:
            assert isinstance(event, EVENTS)
            if isinstance(event, CallRejected):
                assert event.error.code != "InternalError", event.error  # a bug in our parser
                _check_error(event.error)
            if isinstance(event, CallReceived):
                conn.send_error(event.unique_id, ERROR_CLASSES["NotSupported"]("test"))
        for written in conn.data_to_send():
            _check_written(written)
    assert all(isinstance(event, CallCancelled) for event in conn.close())
