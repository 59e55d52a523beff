"""RFC 9457 problem details: the one shape of every error an HTTP service answers
(needs the `http` extra)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the error is, e.g. ['body', 'ciphertext'].")
    msg: str


class Problem(BaseModel):
    type: str = Field(description="A URI reference naming the kind of problem.")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None,
        description="Which inputs failed validation; the inputs themselves are never echoed.",
    )


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> ProblemResponse:
    problem = Problem(type=f"/problems/{slug}", title=title, status=status, detail=detail)
    if errors is not None:
        problem.errors = errors
    body: dict[str, Any] = problem.model_dump(mode="json", exclude_none=True)
    return ProblemResponse(body, status_code=status, headers=headers)


class ProblemError(Exception):
    """Raised by routes and dependencies to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> ProblemResponse:
        return problem_response(
            self.status, self.slug, self.title, self.detail, headers=self.headers
        )


# Starlette's own details for these are bare status phrases; ours say more.
_HTTP_PROBLEMS: dict[int, tuple[str, str, str | None]] = {
    404: ("not-found", "Not found", "no resource at this path"),
    405: ("method-not-allowed", "Method not allowed", "this path does not support that method"),
    413: ("content-too-large", "Content too large", None),
}


def route_template(request: Request) -> str:
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


def _unexpected(service: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"method": request.method, "route": route_template(request)},
        )
        return problem_response(
            500, "internal-error", "Internal server error", f"{service} failed unexpectedly"
        )

    return handler


def install_problem_handlers(app: FastAPI, service: str) -> None:
    """Whatever goes wrong, the client gets a problem document; ``service``
    names who failed in a 500's detail ("the gateway")."""
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected(service))
