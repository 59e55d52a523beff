"""Exception handlers: whatever goes wrong, the client gets a problem document."""

from __future__ import annotations

import logging
from http import HTTPStatus

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from murmur_gateway.convert import BadBackendReply
from murmur_gateway.problems import FieldError, ProblemError, problem_response

log = logging.getLogger(__name__)

# (HTTP status, slug, title) per gRPC status. Codes missing here mean the backend
# itself failed, which is not the client's doing: 502.
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid-argument", "Invalid argument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "out-of-range", "Out of range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthorized", "Unauthorized"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden", "Forbidden"),
    grpc.StatusCode.NOT_FOUND: (404, "not-found", "Not found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict", "Conflict"),
    grpc.StatusCode.ABORTED: (409, "conflict", "Conflict"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "conflict", "Conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "too-many-requests", "Too many requests"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "upstream-timeout", "Upstream timeout"),
    grpc.StatusCode.UNAVAILABLE: (503, "upstream-unavailable", "Upstream unavailable"),
}
_BAD_GATEWAY = (502, "bad-gateway", "Bad gateway")
_SERVER_DETAIL = {
    502: "the timeline service failed to answer the request",
    503: "the timeline service is unavailable; retry later",
    504: "the timeline service did not answer in time",
}


# Starlette's own details for these are bare status phrases; ours say more.
_HTTP_PROBLEMS: dict[int, tuple[str, str, str | None]] = {
    404: ("not-found", "Not found", "no resource at this path"),
    405: ("method-not-allowed", "Method not allowed", "this path does not support that method"),
    413: ("content-too-large", "Content too large", None),
}


def _route(request: Request) -> str:
    # The template, not the path: paths hold user and post ids.
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


async def _problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return exc.response()


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status in _HTTP_PROBLEMS:
        slug, title, fixed_detail = _HTTP_PROBLEMS[status]
    else:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        slug, fixed_detail = title.lower().replace(" ", "-"), None
    detail = fixed_detail or (exc.detail if isinstance(exc.detail, str) else title)
    return problem_response(status, slug, title, detail, headers=exc.headers)


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    # Only where and why: pydantic's "input" (and "ctx", which may quote it)
    # would echo request bodies, and those carry ciphertext.
    errors = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        errors.append(FieldError(loc=loc, msg=str(error.get("msg", "invalid"))))
    return errors


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        return problem_response(
            400, "malformed-json", "Malformed JSON", "the request body is not valid JSON"
        )
    errors = _field_errors(exc)
    if all(e.loc[:1] == ["body"] for e in errors):
        return problem_response(
            422,
            "validation-error",
            "Validation error",
            "the request body does not match the schema",
            errors=errors,
        )
    return problem_response(
        400,
        "invalid-parameter",
        "Invalid parameter",
        "a path, query or header parameter is invalid",
        errors=errors,
    )


async def _grpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    code = exc.code()
    status, slug, title = _GRPC_TO_HTTP.get(code, _BAD_GATEWAY)
    if status < 500:
        # The timeline's messages are written for callers and never hold
        # request bodies, so the client can see them.
        detail = exc.details() or title
    else:
        detail = _SERVER_DETAIL.get(status, title)
        log.warning(
            "timeline call failed",
            extra={"grpc_code": code.name, "grpc_details": exc.details(), "route": _route(request)},
        )
    # Every 401 carries the challenge (RFC 9110), whoever refused.
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem_response(status, slug, title, detail, headers=headers)


async def _bad_backend_reply(_: Request, exc: Exception) -> Response:
    log.error("timeline reply breaks the contract", extra={"error": str(exc)})
    status, slug, title = _BAD_GATEWAY
    return problem_response(status, slug, title, _SERVER_DETAIL[status])


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "unhandled error",
        exc_info=exc,
        extra={"method": request.method, "route": _route(request)},
    )
    return problem_response(
        500, "internal-error", "Internal server error", "the gateway failed unexpectedly"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(grpc.aio.AioRpcError, _grpc_error)
    app.add_exception_handler(BadBackendReply, _bad_backend_reply)
    app.add_exception_handler(Exception, _unexpected)
