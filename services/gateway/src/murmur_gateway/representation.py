"""What a GET answers with: the client's variant (media type, fields, content
coding) chosen once per request, the document rendered into it, and the
response finished with its validators and caching headers.

Every response varies by ``Accept`` and ``Accept-Encoding``, so both are always
named in ``Vary``, on 304s too. ETags are weak: they name the version of the
resource (which posts a page holds; a post's id, since posts never change) and
the variant's media type and fields, not the exact bytes, so one ETag serves
every content coding of the same content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from google.protobuf.message import Message
from starlette.responses import Response

from murmur_core.problems import ProblemError
from murmur_gateway.compression import compress, worth_compressing
from murmur_gateway.encoders import ENCODERS, JSON
from murmur_gateway.fields import ALL, FieldSyntaxError, Projection, compile_fields
from murmur_gateway.negotiation import canonical_media_type, choose_encoding, choose_media_type

VARY = "Accept-Encoding, Accept"
OFFERED_MEDIA_TYPES = (
    JSON,
    "application/msgpack",
    "application/x-msgpack",
    "application/vnd.msgpack",
    "application/protobuf",
    "application/x-protobuf",
    "application/vnd.google.protobuf",
)
IDENTITY = "identity"
FIELDS_DESCRIPTION = (
    "Partial response, Google style: `items(id,author_id,created_at),next_cursor`, "
    "`a/b` paths, `*`. Unknown names are ignored; a syntax error is a 400 that names "
    "the position. Leaving `ciphertext` out gives a list view."
)


@dataclass(frozen=True, slots=True)
class Variant:
    media_type: str
    projection: Projection
    coding: str

    def cache_key(self) -> str:
        return f"{self.media_type}|{self.projection.canonical}|{self.coding}"


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    media_type: str
    coding: str
    etag: str


def _not_acceptable(detail: str) -> ProblemError:
    return ProblemError(406, "not-acceptable", "Not acceptable", detail)


def choose_variant(accept: str | None, accept_encoding: str | None, fields: str | None) -> Variant:
    media = choose_media_type(accept, OFFERED_MEDIA_TYPES)
    if media is None:
        raise _not_acceptable(
            "acceptable media types are application/json, application/msgpack "
            "and application/protobuf"
        )
    coding = choose_encoding(accept_encoding)
    if coding is None:
        raise _not_acceptable("acceptable content codings are zstd, br, gzip and identity")
    if fields is None:
        projection = ALL
    else:
        try:
            projection = compile_fields(fields)
        except FieldSyntaxError as exc:
            raise ProblemError(400, "invalid-fields", "Invalid fields", f"fields: {exc}") from None
    return Variant(canonical_media_type(media), projection, coding)


async def negotiate(
    request: Request,
    fields: Annotated[str | None, Query(description=FIELDS_DESCRIPTION)] = None,
) -> Variant:
    headers = request.headers
    return choose_variant(headers.get("accept"), headers.get("accept-encoding"), fields)


ChosenVariant = Annotated[Variant, Depends(negotiate)]


def version_tag(*parts: str) -> str:
    """A short digest naming a version of a resource."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def render(doc: Any, message_type: type[Message], variant: Variant, version: str) -> Rendered:
    body = ENCODERS[variant.media_type](variant.projection.apply(doc), message_type)
    coding = variant.coding
    if coding != IDENTITY and worth_compressing(body, variant.media_type):
        body = compress(body, coding)
    else:
        coding = IDENTITY
    etag = f'W/"{version_tag(version, variant.media_type, variant.projection.canonical)}"'
    return Rendered(body, variant.media_type, coding, etag)


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison against each listed tag, or ``*``."""
    if not if_none_match:
        return False
    wanted = _opaque(etag)
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or _opaque(candidate) == wanted:
            return True
    return False


def respond(
    request: Request,
    rendered: Rendered,
    *,
    cache_control: str,
    surrogate_keys: tuple[str, ...] = (),
    extra: dict[str, str] | None = None,
) -> Response:
    headers = {"ETag": rendered.etag, "Vary": VARY, "Cache-Control": cache_control}
    if surrogate_keys:
        headers["Surrogate-Key"] = " ".join(surrogate_keys)
    if extra:
        headers.update(extra)
    # RFC 9110 §15.4.5: a 304 repeats the ETag, Cache-Control and Vary a 200
    # would have carried, and nothing about the body.
    if request.method in ("GET", "HEAD") and not_modified(
        request.headers.get("if-none-match"), rendered.etag
    ):
        return Response(status_code=304, headers=headers)
    if rendered.coding != IDENTITY:
        headers["Content-Encoding"] = rendered.coding
    return Response(rendered.body, media_type=rendered.media_type, headers=headers)


def uncached(
    rendered: Rendered, *, status: int = 200, extra: dict[str, str] | None = None
) -> Response:
    """An answer no cache may keep: writes, and reads that consume a position."""
    headers = {"Cache-Control": "no-store", "Vary": VARY, **(extra or {})}
    if rendered.coding != IDENTITY:
        headers["Content-Encoding"] = rendered.coding
    return Response(
        rendered.body, status_code=status, media_type=rendered.media_type, headers=headers
    )


def created(rendered: Rendered, *, is_new: bool, location: str) -> Response:
    """A write's answer: 201 with Location when it made something, 200 when
    it found the same thing already there."""
    if is_new:
        return uncached(rendered, status=201, extra={"Location": location})
    return uncached(rendered)
