"""How deep and how long JSON from outside may be, and the decoder that holds it to that.

Python's decoder recurses once per nesting level and turns an integer literal of any length
into an ``int`` (quadratic in its digits, up to the interpreter's own limit of 4,300), so a
message nested 100,000 deep or holding a 100,000-digit number costs far more than its size, and
fails with ``RecursionError`` or a bare ``ValueError``. No message of OCPP 1.6, of the REST API
or of the station config comes near these limits (docs/security-input.md):

* nesting: at most :data:`MAX_DEPTH` levels of arrays and objects (``[]`` is one level),
  checked on the text before decoding (:func:`check_depth`);
* integers: at most :data:`MAX_DIGITS` digits, checked by the decoder as it meets each one,
  before the ``int`` is built.

:func:`loads` applies both, and by default RFC 8259's numbers: no ``NaN`` or ``Infinity``, no
float literal that overflows to infinity. It is the one JSON decoder for what comes from
outside: OCPP frames (:mod:`protocol.frames`), REST bodies and the config file; every failure is
a ``ValueError``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "JsonLimitError", "check_depth", "loads"]

MAX_DEPTH: Final = 64
MAX_DIGITS: Final = 100


class JsonLimitError(ValueError):
    """The text is over one of the limits; the message says which, never quoting the input."""


_DROP: Final = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE: Final = bytes.maketrans(b"{}", b"[]")
_TOO_DEEP: Final = b"[" * (MAX_DEPTH + 1)


def check_depth(text: str) -> None:
    """Raise :class:`JsonLimitError` if valid JSON ``text`` nests deeper than MAX_DEPTH.

    Exact for valid JSON; invalid JSON may pass, and its decoder then refuses it. A few linear
    passes in C: text with at most MAX_DEPTH brackets (every real message) is passed after two
    counts.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    # Brackets in strings are not nesting. In a JSON string a backslash escapes the next
    # character, so without the escaped backslashes and then the escaped quotes, every quote left
    # opens or closes a string, and every other piece between quotes is outside one.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[::2])
    # Only the brackets, all square ("[[][]]"); UTF-8 keeps ASCII bytes for ASCII only.
    brackets = outside.encode("utf-8", "surrogatepass").translate(_SQUARE, _DROP)
    if _TOO_DEEP in brackets:
        raise JsonLimitError(f"nested deeper than {MAX_DEPTH} levels")
    # Each pass removes the innermost pairs ("[]"), one level of every branch: a container is
    # gone after as many passes as it is high. A pair left after MAX_DEPTH passes was higher.
    for _ in range(MAX_DEPTH):
        if not brackets:
            return
        brackets = brackets.replace(b"[]", b"")
    if b"[]" in brackets:
        raise JsonLimitError(f"nested deeper than {MAX_DEPTH} levels")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_DIGITS and len(text.lstrip("-")) > MAX_DIGITS:
        raise JsonLimitError(f"an integer has more than {MAX_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")  # e.g. 1e400
    return value


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are Python extensions, not JSON (RFC 8259 section 6).
    raise ValueError(f"{name} is not a JSON number")


# Built once: ``json.loads`` with any option builds a new decoder per call, which costs as much
# as decoding a small frame. They hold configuration only, no state. The first of each pair
# checks every integer's length (a Python call per integer); it is needed only when the text
# has a run of more than MAX_DIGITS digits somewhere, which one regular-expression scan tells.
_FINITE: Final = (
    json.JSONDecoder(
        parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int
    ),
    json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float),
)
# For callers whose validation names the field of a NaN or an infinity (pydantic with
# ``allow_inf_nan=False``), which says more than "not valid JSON".
_ANY_FLOAT: Final = (json.JSONDecoder(parse_int=_bounded_int), json.JSONDecoder())
_LONG_DIGIT_RUN: Final = re.compile(f"[0-9]{{{MAX_DIGITS + 1}}}")


def loads(text: str | bytes, *, finite: bool = True) -> Any:
    """Decode JSON from outside within the limits; every failure is a ``ValueError``:
    ``json.JSONDecodeError`` (with line and column) for text that is not JSON,
    ``UnicodeDecodeError`` for bytes that are not UTF-8, :class:`JsonLimitError` for text over a
    limit, and (``finite`` only) a plain ``ValueError`` for ``NaN``, ``Infinity`` or a number
    that overflows; without ``finite`` they are decoded as Python's nan and inf."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    check_depth(text)
    try:
        checked, unchecked = _FINITE if finite else _ANY_FLOAT
        return (unchecked if _LONG_DIGIT_RUN.search(text) is None else checked).decode(text)
    except RecursionError:
        # Not reachable within MAX_DEPTH; kept so that no caller ever sees one.
        raise JsonLimitError(f"nested deeper than {MAX_DEPTH} levels") from None
