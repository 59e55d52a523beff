"""Proactive content negotiation (RFC 9110 §12): which content coding and which
media type a response uses, from the request's Accept-Encoding and Accept.

Pure functions over header strings, so they can be tested without an app. A
``None`` result means nothing the server has is acceptable; the caller answers
406. Malformed input never raises: an element with an unusable weight is
dropped, as if the client had not sent it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

IDENTITY = "identity"

# Server preference among content codings, best first: zstd and brotli beat
# gzip on both size and speed at the levels compression.py uses.
DEFAULT_CODINGS: tuple[str, ...] = ("zstd", "br", "gzip")

# RFC 9110 §8.4.1.3: a recipient SHOULD treat "x-gzip" as "gzip".
_CODING_ALIASES = {"x-gzip": "gzip"}

_MEDIA_ALIASES = {
    "application/x-msgpack": "application/msgpack",
    "application/x-protobuf": "application/protobuf",
    "application/vnd.google.protobuf": "application/protobuf",
}

# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
# [0-9] rather than \d, which would also accept non-ASCII digits.
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


class Element(NamedTuple):
    """One list element: a lower-cased token (coding or media range), its
    weight, and its other parameters (names lower-cased, values unquoted)."""

    name: str
    q: float
    params: dict[str, str]


def parse_qlist(header: str) -> list[Element]:
    """The elements of a weighted list such as Accept or Accept-Encoding.

    Tolerates optional whitespace, empty elements and parameters, and quoted
    parameter values (which may contain "," and ";"). An element whose ``q`` is
    not a valid qvalue, or is given twice, is left out.
    """
    elements: list[Element] = []
    for item in _split(header, ","):
        name, *params = _split(item, ";")
        name = name.strip().lower()
        if not name:
            continue
        q: float | None = None
        extra: dict[str, str] = {}
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not key:
                continue
            if key != "q":
                extra[key] = _unquote(value)
            elif q is None and _QVALUE.fullmatch(value):
                q = float(value)
            else:
                break  # invalid or repeated weight: the whole element is dropped
        else:
            elements.append(Element(name, 1.0 if q is None else q, extra))
    return elements


def choose_encoding(
    accept_encoding: str | None, available: Sequence[str] = DEFAULT_CODINGS
) -> str | None:
    """The content coding for a response (RFC 9110 §12.5.3): an entry of
    ``available``, ``"identity"`` for none, or None if not even identity is
    acceptable.

    The highest weight wins; equal weights go to the earlier entry of
    ``available``. Identity is acceptable unless excluded (``identity;q=0``, or
    ``*;q=0`` with no identity entry); it wins only with a weight strictly
    above every acceptable coding, and a client that never mentions it (nor
    ``*``) gets it only when no coding is acceptable.
    """
    if accept_encoding is None:
        return IDENTITY  # no header: the client did not ask for any coding
    weights: dict[str, float] = {}
    for element in parse_qlist(accept_encoding):
        name = _CODING_ALIASES.get(element.name, element.name)
        # A coding listed twice gets the better of its weights.
        weights[name] = max(element.q, weights.get(name, 0.0))
    star = weights.get("*")

    best: str | None = None
    best_q = 0.0
    for coding in available:
        name = coding.lower()
        name = _CODING_ALIASES.get(name, name)
        if name == IDENTITY:
            continue  # identity is decided below, not as a coding
        # Not listed and no "*": not acceptable (this is also what makes an
        # empty header mean "identity only").
        q = weights.get(name, 0.0 if star is None else star)
        if q > best_q:  # strict: on a tie the earlier, preferred coding stays
            best, best_q = coding, q

    identity_q = weights.get(IDENTITY, star)
    if identity_q is None:
        return best or IDENTITY
    if identity_q > best_q:
        return IDENTITY
    return best


def canonical_media_type(name: str) -> str:
    """``name`` lower-cased, without parameters, with aliases mapped to one
    canonical spelling (``application/x-msgpack`` → ``application/msgpack``)."""
    bare = name.split(";", 1)[0].strip().lower()
    return _MEDIA_ALIASES.get(bare, bare)


def choose_media_type(accept: str | None, available: Sequence[str]) -> str | None:
    """The entry of ``available`` to respond with (RFC 9110 §12.5.1), or None
    if none is acceptable.

    Each offered type takes its weight from the most specific range matching
    it (``type/subtype`` over ``type/*`` over ``*/*``; aliases match their
    canonical type; parameters other than q are ignored). The highest weight
    wins; equal weights go to the earlier entry, so the first is the default.
    """
    if not available:
        return None
    ranges = [] if accept is None else _media_ranges(accept)
    if not ranges:
        # RFC 9110 gives an empty Accept no meaning, and a client whose every
        # element was unusable has stated no usable preference: both as absent.
        return available[0]
    best: str | None = None
    best_q = 0.0
    for offered in available:
        q = _media_weight(canonical_media_type(offered), ranges)
        if q > best_q:
            best, best_q = offered, q
    return best


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    """(type, subtype, q) of each well-formed range; others are dropped."""
    ranges: list[tuple[str, str, float]] = []
    for element in parse_qlist(accept):
        kind, slash, subtype = canonical_media_type(element.name).partition("/")
        if not kind or not slash or not subtype or "/" in subtype:
            continue
        if kind == "*" and subtype != "*":
            continue  # "*/json" is not a media range
        ranges.append((kind, subtype, element.q))
    return ranges


def _media_weight(offered: str, ranges: list[tuple[str, str, float]]) -> float:
    kind, _, subtype = offered.partition("/")
    best_specificity, q = -1, 0.0
    for range_kind, range_subtype, range_q in ranges:
        if range_kind == "*":
            specificity = 0
        elif range_kind != kind:
            continue
        elif range_subtype == "*":
            specificity = 1
        elif range_subtype == subtype:
            specificity = 2
        else:
            continue
        if specificity > best_specificity:
            best_specificity, q = specificity, range_q
        elif specificity == best_specificity:
            q = max(q, range_q)  # the same range listed twice: the better weight
    return q


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside quoted strings."""
    if '"' not in text:
        return text.split(separator)  # the usual case, without a character loop
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value
