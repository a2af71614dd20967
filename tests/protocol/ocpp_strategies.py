"""Hypothesis strategies derived from the message models themselves.

The walker reads each field's annotation (``Annotated`` metadata such as ``MaxLen``/``MinLen``/
``Ge``, enums, nested models, lists, optionals) so that every model, present and future, gets a
strategy without a hand-written table. Our own scalar aliases (URIs, one-decimal numbers,
timestamps) map to dedicated strategies; the lenient transaction timestamp is generated as a
valid one, since the schema describes what a compliant peer sends.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin

from annotated_types import Ge, Le, MaxLen, MinLen
from hypothesis import strategies as st
from pydantic import BaseModel

from protocol.messages.base import Decimal1, Uri
from protocol.messages.timestamps import DateTime, LenientDateTime

timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
)
uris = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["ftp", "https", "http", "sftp"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._~-]{0,30}", fullmatch=True),
)
one_decimal = st.integers(min_value=-(10**8), max_value=10**8).map(lambda n: n / 10)

_SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    DateTime: timestamps,
    LenientDateTime: timestamps,
    Uri: uris,
    Decimal1: one_decimal,
}


def for_annotation(tp: Any, meta: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
    for alias, strategy in _SCALARS.items():
        if tp == alias:
            return strategy
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        # Identical, but lets the alias lookup above match.
        rebuilt = Annotated[base, *extra]  # type: ignore[valid-type]
        for alias, strategy in _SCALARS.items():
            if rebuilt == alias:
                return strategy
        return for_annotation(base, (*meta, *extra))
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        inner = st.one_of([for_annotation(a, meta) for a in members])
        return st.none() | inner if len(members) < len(get_args(tp)) else inner
    min_len = max((m.min_length for m in meta if isinstance(m, MinLen)), default=0)
    max_len = min((m.max_length for m in meta if isinstance(m, MaxLen)), default=None)
    if origin is list:
        (item,) = get_args(tp)
        return st.lists(for_annotation(item), min_size=min_len, max_size=max(min_len, 3))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return for_model(tp)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if tp is bool:
        return st.booleans()
    if tp is int:
        # The bounds the type declares (int32, or the meter registers' 2**53 - 1).
        low = max((int(m.ge) for m in meta if isinstance(m, Ge)), default=-(2**31))  # type: ignore[call-overload]
        high = min((int(m.le) for m in meta if isinstance(m, Le)), default=2**31 - 1)  # type: ignore[call-overload]
        return st.integers(min_value=low, max_value=high)
    if tp is str:
        return st.text(min_size=min_len, max_size=max_len if max_len is not None else 40)
    raise NotImplementedError(f"no strategy for {tp!r}")


def for_model(
    model: type[BaseModel], **overrides: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    # Keyed by wire alias: the alias is what pydantic's __init__ signature shows, and hypothesis
    # would otherwise infer its own value for it next to ours.
    fields = {
        field.alias or name: overrides.get(name) or for_annotation(field.rebuild_annotation())
        for name, field in model.model_fields.items()
    }
    return st.builds(model, **fields)
