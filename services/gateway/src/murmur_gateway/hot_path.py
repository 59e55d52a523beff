"""The hottest read, answered before FastAPI routes it.

A phone opening the app asks for its first home page; most of those answers
are already rendered in the near cache. For such a hit, FastAPI's routing and
dependency resolution cost several times the work of the answer itself (half
the gateway's CPU on a cached read, profiled under load). This middleware
answers exactly that case, first page of GET /v1/timelines/home present in
the near cache, with the same steps the route takes, through the same
functions: verify the token, choose the variant, charge the rate limits,
answer with validators. Anything else, or anything that would be an error,
goes on to FastAPI untouched, which answers it as usual.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from murmur_core.problems import ProblemError
from murmur_gateway.auth import charge, verify_token
from murmur_gateway.reads import Reads
from murmur_gateway.representation import choose_variant, respond
from murmur_gateway.routes.timelines import HOME_PATH, PRIVATE, stale_header
from murmur_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
HOT_PATH_ANSWERS = Counter(
    "murmur_gateway_hot_path_answers_total",
    "Requests answered from the near cache before routing (see hot_path.py).",
)
_ANSWERED_PARAMS = frozenset({"limit", "fields"})


class HotReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != HOME_PATH:
            await self.app(scope, receive, send)
            return
        response = None
        if self._route is not None:
            try:
                response = await self._answer(scope)
            except Exception:
                # Never worse than the routed path: it answers instead.
                log.exception("hot path failed; handing the request on")
        if response is None:
            await self.app(scope, receive, send)
            # The route the router chose, for labelling our own answers the
            # same way. A hit needs a routed miss first, so it is known by then.
            self._route = self._route or scope.get("route")
            return
        HOT_PATH_ANSWERS.inc()
        # The RED metrics and the span are labelled by this route.
        scope["route"] = self._route
        await response(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response | None:
        state = scope["app"].state
        reads: Reads | None = getattr(state, "reads", None)
        settings: GatewaySettings = state.settings
        if reads is None:
            return None
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        if not params.keys() <= _ANSWERED_PARAMS:
            return None  # a cursor (a later page), or something to refuse
        limit_text = params.get("limit")
        if limit_text is None:
            limit = settings.default_page_size
        elif limit_text.isdigit() and 1 <= int(limit_text) <= settings.max_page_size:
            limit = int(limit_text)
        else:
            return None
        headers = Headers(scope=scope)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            principal = verify_token(state.verifier, token.strip())
            variant = choose_variant(
                headers.get("accept"), headers.get("accept-encoding"), params.get("fields")
            )
        except ProblemError:
            return None
        reply = reads.cached_home(principal.user_id, limit, variant)
        if reply is None:
            return None
        request = Request(scope)
        try:
            await charge(request, principal.user_id)
        except ProblemError as refused:
            return refused.response()
        state.cache_sync.seen(principal.user_id)
        return respond(request, reply.rendered, cache_control=PRIVATE, extra=stale_header(reply))
