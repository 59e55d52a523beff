"""Content negotiation (Accept-Encoding, Accept) and response compression."""

from __future__ import annotations

import base64
import gzip
import json
import random
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard

from murmur_gateway.compression import (
    CODINGS,
    MIN_COMPRESS_BYTES,
    compress,
    decompress,
    weaken_etag,
    worth_compressing,
)
from murmur_gateway.negotiation import (
    DEFAULT_CODINGS,
    Element,
    canonical_media_type,
    choose_encoding,
    choose_media_type,
    parse_qlist,
)

# What the gateway offers, in its order of preference.
GATEWAY_TYPES = (
    "application/json",
    "application/msgpack",
    "application/x-msgpack",
    "application/protobuf",
    "application/x-protobuf",
)


def timeline_page(posts: int) -> bytes:
    """A JSON PostPage as the gateway sends it: random (encrypted) payloads in
    base64 amid ids and timestamps, so it compresses about as well as real ones."""
    rng = random.Random(posts)
    authors = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(15)]
    items = [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "author_id": rng.choice(authors),
            "audience": rng.choice(["public", "followers"]),
            "ciphertext": base64.b64encode(rng.randbytes(rng.randrange(50, 150))).decode(),
            "key_id": f"k{rng.randrange(20)}",
            "created_at": f"2024-05-06T07:{rng.randrange(60):02d}:09.{rng.randrange(1000):03d}Z",
            "expires_at": None,
            "reply_to": None,
        }
        for _ in range(posts)
    ]
    return json.dumps({"items": items, "next_cursor": "cDE6MDE5MGFiYw", "has_more": True}).encode()


def follower_page(count: int) -> bytes:
    """A JSON FollowerPage: structure and ids, no ciphertext."""
    rng = random.Random(count)
    items = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count)]
    return json.dumps({"items": items, "next_cursor": "cDE6MDE5MGFiYw", "has_more": True}).encode()


PAGE = timeline_page(50)


# --- Accept-Encoding -------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # No header: no coding was asked for.
        (None, "identity"),
        # Empty value: RFC 9110 §12.5.3, the client wants no coding.
        ("", "identity"),
        ("  ", "identity"),
        (",, ,", "identity"),
        ("gzip", "gzip"),
        ("gzip;q=0", "identity"),
        ("br;q=1.0, gzip;q=0.8", "br"),
        ("*", "zstd"),
        ("*;q=0", None),
        ("identity;q=0", None),
        ("*;q=0, identity;q=0", None),
        ("*;q=0, identity", "identity"),
        ("*;q=0, gzip", "gzip"),
        ("identity;q=0, *;q=0.5", "zstd"),
        ("*, zstd;q=0", "br"),
        ("*;q=0.5, gzip", "gzip"),
        ("identity", "identity"),
        # Equal weights go to the server's order, and to any coding over identity.
        ("gzip;q=0.5, br;q=0.5", "br"),
        ("gzip, br", "br"),
        ("identity;q=0.5, gzip;q=0.5", "gzip"),
        ("identity;q=0.6, gzip;q=0.5", "identity"),
        ("identity, gzip", "gzip"),
        # "*" weighs identity too when identity has no entry of its own.
        ("gzip;q=0.4, *;q=0.5", "zstd"),
        ("zstd;q=0.1, gzip", "gzip"),
        ("zstd;q=0.1", "zstd"),
        ("gzip;q=0.001", "gzip"),
        ("GZIP;Q=0.9", "gzip"),
        ("Br, GZip;q=0.9", "br"),
        ("x-gzip", "gzip"),
        ("x-gzip;q=0", "identity"),
        # A coding listed twice gets the better weight.
        ("gzip;q=0, gzip;q=0.5", "gzip"),
        ("gzip;q=0.5, gzip;q=0", "gzip"),
        # Invalid weights drop their element only.
        ("gzip;q=1.5", "identity"),
        ("gzip;q=abc", "identity"),
        ("gzip;q=", "identity"),
        ("gzip;q", "identity"),
        ("gzip;q=.5", "identity"),
        ("gzip;q=-0", "identity"),
        ("gzip;q=0.1234", "identity"),
        ("gzip;q=1.001", "identity"),
        ('gzip;q="0.5"', "identity"),
        ("gzip;q=0.5;q=1", "identity"),
        ("gzip;q=1.000", "gzip"),
        ("gzip;q=1.", "gzip"),  # a bare "." is valid
        ("identity;q=0.", None),
        ("br;q=0.2, gzip;q=abc", "br"),
        ("gzip;q=abc, *;q=0", None),
        # Whitespace, empty elements and parameters are tolerated.
        (" gzip ; q=0.5 ,\tbr ; q=0.4 ,, ", "gzip"),
        ("gzip;q=0.3,br;q=0.9", "br"),
        ("\tgzip\t;\tq=0.5\t", "gzip"),
        ("gzip;;q=0.5;, br;q=0.4", "gzip"),
        # A quoted parameter value may hold "," and ";" without splitting anything.
        ('gzip;level="1,2;q=0";q=0.5, br;q=0.4', "gzip"),
        # Unknown codings are ignored; identity stays acceptable.
        ("compress, deflate", "identity"),
        ("deflate;q=1, identity;q=0", None),
        # What browsers send.
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, deflate, br", "br"),
        ("gzip, deflate", "gzip"),
    ],
)
def test_choose_encoding(header: str | None, expected: str | None) -> None:
    assert choose_encoding(header) == expected


@pytest.mark.parametrize(
    ("header", "available", "expected"),
    [
        ("br, gzip", ("gzip",), "gzip"),
        ("br", ("gzip",), "identity"),
        ("br", (), "identity"),
        ("*;q=0", (), None),
        ("gzip, br", ("gzip", "br"), "gzip"),
        ("*", ("identity", "gzip"), "gzip"),
        ("gzip", ("GZIP",), "GZIP"),
        ("gzip;q=0.4, *;q=0.5", ("gzip",), "identity"),
    ],
)
def test_choose_encoding_among_what_is_available(
    header: str, available: tuple[str, ...], expected: str | None
) -> None:
    assert choose_encoding(header, available) == expected


def test_every_offered_coding_can_be_produced() -> None:
    assert DEFAULT_CODINGS == CODINGS


# --- Accept ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json", "application/json"),
        ("application/msgpack", "application/msgpack"),
        ("APPLICATION/MsgPack", "application/msgpack"),
        ("application/protobuf", "application/protobuf"),
        # Aliases match their canonical type, whose entry comes first.
        ("application/x-msgpack", "application/msgpack"),
        ("application/x-protobuf", "application/protobuf"),
        ("application/vnd.google.protobuf", "application/protobuf"),
        ("application/json; charset=utf-8", "application/json"),
        ("application/json;q=0.5, application/msgpack", "application/msgpack"),
        ("application/msgpack, application/json", "application/json"),
        # The most specific matching range sets the weight.
        ("application/*;q=0.1, application/json;q=0", "application/msgpack"),
        ("application/*, application/json;q=0.2", "application/msgpack"),
        ("*/*;q=0.1, application/protobuf;q=0.5", "application/protobuf"),
        ("application/msgpack;q=0, */*", "application/json"),
        # A range listed twice gets the better weight.
        (
            "application/json;q=0.9, application/json;q=0.1, application/msgpack;q=0.5",
            "application/json",
        ),
        ("application/json;q=0, application/msgpack;q=0, */*", "application/protobuf"),
        ("application/json;q=0, application/x-msgpack;q=0, */*", "application/protobuf"),
        ("text/html", None),
        ("text/*", None),
        ("*/*;q=0", None),
        ("application/*;q=0", None),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
        ('application/msgpack;profile="a,b", text/html', "application/msgpack"),
        # Malformed elements are dropped; with nothing left it is as if absent.
        ("application/json;q=abc, application/msgpack;q=0.5", "application/msgpack"),
        ("application/msgpack;q=abc", "application/json"),
        ("*/json, text/html", None),
        ("json, text/html", None),
    ],
)
def test_choose_media_type(header: str | None, expected: str | None) -> None:
    assert choose_media_type(header, GATEWAY_TYPES) == expected


def test_choose_media_type_with_nothing_available() -> None:
    assert choose_media_type("*/*", ()) is None
    assert choose_media_type(None, ()) is None


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("application/x-msgpack", "application/msgpack"),
        ("application/msgpack", "application/msgpack"),
        ("APPLICATION/X-PROTOBUF", "application/protobuf"),
        ("application/vnd.google.protobuf", "application/protobuf"),
        ("application/json; charset=utf-8", "application/json"),
        (" text/html ", "text/html"),
    ],
)
def test_canonical_media_type(name: str, canonical: str) -> None:
    assert canonical_media_type(name) == canonical


def test_parse_qlist_keeps_parameters_and_unquotes() -> None:
    assert parse_qlist('Text/HTML; Level=1 ;q=0.5; note="a \\"b\\", c"') == [
        Element("text/html", 0.5, {"level": "1", "note": 'a "b", c'})
    ]


def test_parse_qlist_defaults_weight_to_one() -> None:
    assert parse_qlist("br, , gzip;q=0") == [Element("br", 1.0, {}), Element("gzip", 0.0, {})]


# --- Compression -----------------------------------------------------------


@pytest.mark.parametrize("coding", ["zstd", "br", "gzip"])
@pytest.mark.parametrize("body", [PAGE, b"", b"x", bytes(range(256)) * 64])
def test_round_trip(coding: str, body: bytes) -> None:
    assert decompress(compress(body, coding), coding) == body


@pytest.mark.parametrize("coding", CODINGS)
def test_compression_shrinks_a_page(coding: str) -> None:
    assert 15_000 < len(PAGE) < 25_000
    assert len(compress(PAGE, coding)) < 0.6 * len(PAGE)


def test_brotli_beats_gzip_on_structured_json_at_the_chosen_levels() -> None:
    # On ciphertext-heavy post pages the two land within ~2 % of each other
    # either way (the base64 payload dominates), so only structure is compared.
    body = follower_page(500)
    assert len(compress(body, "br")) < 0.95 * len(compress(body, "gzip"))


# The levels themselves: each output is the reference library's at that level.
def test_zstd_level_3() -> None:
    assert compress(PAGE, "zstd") == zstandard.ZstdCompressor(level=3).compress(PAGE)


def test_brotli_quality_4() -> None:
    expected = brotli.compress(PAGE, mode=brotli.MODE_TEXT, quality=4)
    assert compress(PAGE, "br") == expected


def test_gzip_level_5() -> None:
    assert compress(PAGE, "gzip") == zlib.compress(PAGE, 5, wbits=31)


def test_gzip_output_is_deterministic_and_standard() -> None:
    first = compress(PAGE, "gzip")
    assert compress(PAGE, "gzip") == first
    assert first[:2] == b"\x1f\x8b"
    assert first[4:8] == b"\0\0\0\0"  # mtime
    assert gzip.decompress(first) == PAGE


def test_codings_are_case_insensitive() -> None:
    assert decompress(compress(PAGE, "GZIP"), "Gzip") == PAGE


def test_zstd_compression_is_safe_across_threads() -> None:
    bodies = [timeline_page(n) for n in range(20, 60)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda body: compress(body, "zstd"), bodies * 4))
    assert [decompress(r, "zstd") for r in results] == bodies * 4


@pytest.mark.parametrize("coding", ["identity", "deflate", "compress", "*", ""])
def test_unknown_codings_are_refused(coding: str) -> None:
    with pytest.raises(ValueError, match="unsupported content coding"):
        compress(PAGE, coding)
    with pytest.raises(ValueError, match="unsupported content coding"):
        decompress(PAGE, coding)


@pytest.mark.parametrize("coding", CODINGS)
def test_decompress_rejects_damaged_bodies(coding: str) -> None:
    good = compress(PAGE, coding)
    for bad in (good[: len(good) // 2], good + b"trailing", b"not compressed at all"):
        with pytest.raises(ValueError, match=coding):
            decompress(bad, coding)


# --- What to compress, and ETags --------------------------------------------


def test_minimum_size() -> None:
    assert MIN_COMPRESS_BYTES == 512


@pytest.mark.parametrize(
    ("size", "media_type", "expected"),
    [
        (511, "application/json", False),
        (512, "application/json", True),
        (0, "application/json", False),
        (20_000, "application/json; charset=utf-8", True),
        (20_000, "application/msgpack", True),
        (20_000, "application/protobuf", True),
        (20_000, "text/plain", True),
        (20_000, "application/octet-stream", False),
        (20_000, "image/png", False),
        (20_000, "IMAGE/JPEG", False),
        (20_000, "video/mp4", False),
        (20_000, "audio/ogg", False),
        (20_000, "application/zstd", False),
        (20_000, "application/gzip", False),
        (20_000, "application/zip", False),
    ],
)
def test_worth_compressing(size: int, media_type: str, expected: bool) -> None:
    assert worth_compressing(b"x" * size, media_type) is expected


def test_worth_compressing_minimum_is_a_parameter() -> None:
    assert worth_compressing(b"x" * 10, "application/json", min_bytes=10) is True
    assert worth_compressing(b"x" * 10, "application/json", min_bytes=11) is False
    assert worth_compressing(b"x" * 600, "application/json", min_bytes=1024) is False


@pytest.mark.parametrize(
    ("etag", "weak"),
    [
        ('"abc"', 'W/"abc"'),
        ('W/"abc"', 'W/"abc"'),
        ('""', 'W/""'),
        ('"p1:0190-ab"', 'W/"p1:0190-ab"'),
    ],
)
def test_weaken_etag(etag: str, weak: str) -> None:
    assert weaken_etag(etag) == weak


@pytest.mark.parametrize("etag", ["abc", '"a b"', 'w/"abc"', '"abc', "W/abc", ""])
def test_weaken_etag_refuses_what_is_not_an_etag(etag: str) -> None:
    with pytest.raises(ValueError, match="not an entity tag"):
        weaken_etag(etag)
