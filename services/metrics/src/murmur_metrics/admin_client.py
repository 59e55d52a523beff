"""Calls to the services' operator endpoints (``/debug/profile``,
``/debug/queries``, on the listener that serves their /metrics), with the
admin token they share with this service."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from murmur_metrics.targets import Replicas, Target

# Profiles kept for viewing; older ones are dropped first.
PROFILES_KEPT = 20
STATEMENTS_SHOWN = 20


class AdminUnavailable(RuntimeError):
    """The service could not be asked (no token here, not reachable, refused)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Profile:
    id: str
    service: str
    instance: str
    seconds: float
    taken_at: float
    html: bytes
    speedscope: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "instance": self.instance,
            "seconds": self.seconds,
            "taken_at": self.taken_at,
            "html_url": f"/api/v1/profiles/{self.id}?format=html",
            "speedscope_url": f"/api/v1/profiles/{self.id}?format=speedscope",
        }


def _base(target: Target) -> str:
    url = target.url
    return url[: -len("/metrics")] if url.endswith("/metrics") else url.rstrip("/")


class AdminClient:
    def __init__(
        self, targets: Replicas, client: httpx.AsyncClient, token: SecretStr | None
    ) -> None:
        self._replicas = targets
        self._client = client
        self._token = token
        self._profiles: OrderedDict[str, Profile] = OrderedDict()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            raise AdminUnavailable(503, "this metrics service has no admin token configured")
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def targets(self) -> list[Target]:
        return await self._replicas.current()

    async def target(self, service: str, instance: str | None) -> Target:
        for target in await self.targets():
            if target.service == service and (instance is None or target.instance == instance):
                return target
        raise AdminUnavailable(404, f"no profiling target {service} {instance or ''}".strip())

    async def profile(self, target: Target, seconds: float) -> Profile:
        """Profile the service for ``seconds``: one run, rendered both ways here."""
        from pyinstrument.renderers import HTMLRenderer, SpeedscopeRenderer
        from pyinstrument.session import Session

        response = await self._get(
            target, "/debug/profile", {"seconds": seconds, "format": "session"}, seconds + 10
        )
        session = Session.from_json(response.json())
        html, speedscope = await asyncio.to_thread(
            lambda: (HTMLRenderer().render(session), SpeedscopeRenderer().render(session))
        )
        profile = Profile(
            id=secrets.token_urlsafe(9),
            service=target.service,
            instance=target.instance,
            seconds=seconds,
            taken_at=time.time(),
            html=html.encode(),
            speedscope=speedscope.encode(),
        )
        self._profiles[profile.id] = profile
        while len(self._profiles) > PROFILES_KEPT:
            self._profiles.popitem(last=False)
        return profile

    def stored(self, profile_id: str) -> Profile | None:
        return self._profiles.get(profile_id)

    async def queries(self) -> dict[str, Any]:
        """The worst SQL statements of every service that keeps statistics."""
        if self._token is None:
            return {"statements": [], "note": "no admin token: statement statistics not read"}
        statements: list[dict[str, Any]] = []
        targets = await self.targets()
        answers = await asyncio.gather(
            *(self._statements(t) for t in targets), return_exceptions=True
        )
        for target, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException):
                continue
            for row in answer:
                statements.append(
                    {
                        "service": target.service,
                        "statement": row["statement"],
                        "calls": row["calls"],
                        "mean_ms": round(row["mean_seconds"] * 1000, 3),
                        "max_ms": round(row["max_seconds"] * 1000, 3),
                        "total_ms": round(row["total_seconds"] * 1000, 3),
                        "slow_calls": row["slow_calls"],
                    }
                )
        statements.sort(key=lambda s: -s["total_ms"])
        return {"statements": statements[:STATEMENTS_SHOWN]}

    async def _statements(self, target: Target) -> list[dict[str, Any]]:
        body = (await self._get(target, "/debug/queries", {}, 2.0)).json()
        rows: list[dict[str, Any]] = body.get("statements", [])
        return rows

    async def _get(
        self, target: Target, path: str, params: dict[str, Any], wait_seconds: float
    ) -> httpx.Response:
        try:
            response = await self._client.get(
                _base(target) + path, params=params, headers=self._headers(), timeout=wait_seconds
            )
        except httpx.HTTPError as exc:
            raise AdminUnavailable(502, f"{target.service} did not answer") from exc
        if response.status_code != 200:
            # A profile already running there is the operator's to retry; any
            # other refusal (a token mismatch included) is a deployment fault.
            raise AdminUnavailable(
                409 if response.status_code == 409 else 502,
                f"{target.service} answered {response.status_code}",
            )
        return response
