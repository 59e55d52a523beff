"""OpenAPI: problem responses documented under their real media type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from murmur_gateway.problems import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    400: "Malformed JSON, or a parameter or value the service refuses.",
    401: "Missing, invalid or expired bearer token.",
    403: "The caller may not do this.",
    404: "No such resource, or one the caller may not see.",
    409: "Conflicts with what is stored.",
    413: "The request body is too large.",
    422: "The request body does not match the schema.",
    429: "Too many requests.",
    500: "The gateway failed unexpectedly.",
    502: "The timeline service failed.",
    503: "The timeline service is unavailable.",
    504: "The timeline service did not answer in time.",
}
UPSTREAM = (401, 500, 502, 503, 504)


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
