"""RFC 9457 problem details: the one shape of every error the gateway answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

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
