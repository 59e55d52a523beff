"""Pieces that need no server: conversions, parsing, settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError

from murmur.timeline.v1 import resources_pb2 as res
from murmur_core.ids import new_uuid7
from murmur_gateway.convert import (
    BadBackendReply,
    create_post_request,
    format_timestamp,
    to_timestamp,
)
from murmur_gateway.documents import post_doc
from murmur_gateway.schemas import CreatePost
from murmur_gateway.settings import GatewaySettings


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [
        (0, 0, "1970-01-01T00:00:00.000Z"),
        (0, 1_999_999, "1970-01-01T00:00:00.001Z"),
        (1_700_000_000, 999_999_999, "2023-11-14T22:13:20.999Z"),
        (-1, 500_000_000, "1969-12-31T23:59:59.500Z"),
    ],
)
def test_timestamps_are_rfc3339_utc_with_milliseconds(seconds: int, nanos: int, text: str) -> None:
    assert format_timestamp(Timestamp(seconds=seconds, nanos=nanos)) == text


def test_to_timestamp_is_exact() -> None:
    moment = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    ts = to_timestamp(moment)
    assert (ts.seconds, ts.nanos) == (int(moment.timestamp()), 123_456_000)


def _body(**changes: object) -> dict[str, object]:
    return {"id": new_uuid7(), "audience": "public", "ciphertext": "AAE=", "key_id": "k", **changes}


def test_expiry_with_offset_and_nanoseconds_becomes_utc() -> None:
    body = CreatePost.model_validate(_body(expires_at="2031-05-06T09:08:09.123456789+02:00"))
    assert body.expires_at == datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    request = create_post_request(body, "alice")
    assert request.HasField("expires_at")
    assert request.expires_at.nanos == 123_456_000
    assert request.ciphertext == b"\x00\x01"
    assert request.audience == res.AUDIENCE_PUBLIC
    assert request.reply_to == ""


@pytest.mark.parametrize(
    "value",
    ["2031-02-30T00:00:00Z", "2031-05-06", "2031-05-06 07:08:09Z", "0001-01-01T00:00:00+01:00"],
)
def test_bad_expiry_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CreatePost.model_validate(_body(expires_at=value))
    assert [e["loc"] for e in caught.value.errors()] == [("expires_at",)]


@pytest.mark.parametrize("value", ["AAE", "AA E=", "-_8=", "AAE=\n"])
def test_only_standard_padded_base64_is_accepted(value: str) -> None:
    with pytest.raises(ValidationError):
        CreatePost.model_validate(_body(ciphertext=value))


def test_unknown_audience_from_the_backend_is_its_fault() -> None:
    with pytest.raises(BadBackendReply):
        post_doc(res.Post(id="p", author_id="a", audience=res.AUDIENCE_UNSPECIFIED))


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9999")
    monkeypatch.setenv("GATEWAY_JWT_PUBLIC_KEY_FILES", "a.pub, b.pub,")
    monkeypatch.setenv("GATEWAY_GRPC_TIMEOUT_SECONDS", "0.75")
    settings = GatewaySettings()
    assert settings.port == 9999
    assert settings.grpc_timeout_seconds == 0.75
    assert settings.jwt_public_key_paths == [Path("a.pub"), Path("b.pub")]
    assert settings.max_body_bytes == 131072
    assert (settings.default_page_size, settings.max_page_size) == (20, 100)


def test_settings_refuse_a_default_page_above_the_maximum() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(default_page_size=50, max_page_size=10)
