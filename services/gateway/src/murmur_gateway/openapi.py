"""OpenAPI: problem responses documented under their real media type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from murmur_core.problems import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    400: "Malformed JSON, or a parameter or value the service refuses.",
    401: "Missing, invalid or expired bearer token.",
    403: "The caller may not do this.",
    404: "No such resource, or one the caller may not see.",
    409: "Conflicts with what is stored.",
    406: "None of the media types or content codings the client accepts is offered.",
    410: "The sync token is older than the changes the server keeps: start over.",
    413: "The request body is too large.",
    422: "The request body does not match the schema.",
    429: "Too many requests.",
    500: "The gateway failed unexpectedly.",
    502: "The timeline service failed.",
    503: "The timeline service is unavailable.",
    504: "The timeline service did not answer in time.",
}
UPSTREAM = (401, 500, 502, 503, 504)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_HEADERS = {
    "ETag": {
        "description": "Weak validator of this content and variant.",
        "schema": {"type": "string"},
    },
    "Vary": {"description": "Always `Accept-Encoding, Accept`.", "schema": {"type": "string"}},
    "Cache-Control": {
        "description": "`private, no-cache` for authenticated reads; public reads carry "
        "`s-maxage`, `stale-while-revalidate` and `stale-if-error` for shared caches.",
        "schema": {"type": "string"},
    },
    "Content-Encoding": {
        "description": "zstd, br or gzip by the request's Accept-Encoding q-values; "
        "absent for small bodies.",
        "schema": {"type": "string"},
    },
}


def representations(status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The media types every read and write answers in, and its validators."""
    documented: dict[int | str, dict[str, Any]] = {
        status: {
            "description": "JSON by default; msgpack (bytes raw) or protobuf "
            "(`murmur.api.v1` messages) by `Accept`.",
            "content": {"application/msgpack": _BINARY, "application/protobuf": _BINARY},
            "headers": _HEADERS,
        }
    }
    if status == 200:
        documented[304] = {
            "description": "`If-None-Match` matched the ETag: no body; the same ETag, "
            "Cache-Control and Vary as a 200."
        }
    return documented


def idempotent_post() -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 255},
                "description": "Makes retries safe (draft-ietf-httpapi-idempotency-key-header): "
                "the same key and request replay the stored response "
                "(`Idempotent-Replayed: true`) for 24 hours; the same key with another "
                "request is 422; a retry while the first is running is 409. Keys are "
                "scoped to the token's user.",
            }
        ]
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": Problem, "description": _DESCRIPTIONS[s]} for s in statuses}


def _fix_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.get("responses", {})
    auto_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
    if auto_422.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        # FastAPI adds its own 422 for any route with parameters; ours answers
        # 400 for parameters and documents 422 itself where there is a body.
        del responses["422"]
    for code, response in responses.items():
        content = response.get("content", {})
        if code[:1] in "45" and "application/json" in content:
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                _fix_operation(operation)
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema
