"""Real Varnish (deploy/varnish/default.vcl) in front of a real gateway process:
public pages are served from Varnish, a write purges them, the next read is
fresh, and nothing authenticated is ever stored by this shared cache.

The gateway here is a second gateway process on the session stack's
timeline, cache, NATS and Redis (the stack's own gateway does not purge
anything), configured with ``GATEWAY_CDN_PURGE_URLS`` = this Varnish. Each
must know the other's address, so the gateway's port is chosen first, Varnish
is started pointing at it (its probe finds the backend sick until the gateway
is up), then the gateway.

Every request, writes included, goes through Varnish, as in production; the
gateway's own /metrics is read directly, to count what reached it. Each test
uses users of its own, so the cached objects of one test are never another's.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from murmur_core.ids import new_uuid7
from murmur_devstack import SERVICES, Stack, Wiring, free_port
from murmur_devstack.varnish import Varnish, run_varnish

DEFAULT_VCL = Path(__file__).resolve().parents[2] / "deploy" / "varnish" / "default.vcl"

# Varnish probes GET /readyz every 2 s and needs 3 good probes of 5 to call a
# backend healthy; the first probes fail while the gateway is starting.
HEALTHY_TIMEOUT_SECONDS = 30.0
USER_POSTS_ROUTE = "/v1/users/{user_id}/posts"
PUBLIC = "public, max-age=30, s-maxage=300, stale-while-revalidate=30, stale-if-error=86400"
PRIVATE = "private, no-cache"


@dataclass(frozen=True)
class Cdn:
    varnish: Varnish
    gateway_url: str  # direct, for /metrics and to compare headers


def _gateway_env(stack: Stack) -> Callable[[Wiring], Mapping[str, str]]:
    """The stack gateway's settings (addresses of the timeline, cache, NATS
    and Redis, the trusted keys, the cursor secret), for a second instance."""
    shared = {
        key: value
        for key, value in stack.env_for("gateway").items()
        if key.startswith("GATEWAY_") and key != "GATEWAY_PORT"
    }
    return lambda _wiring: shared


async def _wait_until_healthy(varnish: Varnish) -> None:
    """Until Varnish's probe calls the gateway healthy: until then Varnish
    answers 503 itself, without asking the gateway."""
    async with httpx.AsyncClient(base_url=varnish.url, timeout=5) as client:
        try:
            async with asyncio.timeout(HEALTHY_TIMEOUT_SECONDS):
                while (await client.get("/healthz")).status_code != 200:
                    await asyncio.sleep(0.25)
        except TimeoutError:
            backends = await varnish.adm("backend.list", "-p")
            pytest.fail(f"Varnish never found the gateway healthy:\n{backends}")


@pytest.fixture(scope="module")
async def cdn(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cdn]:
    port = free_port()
    async with run_varnish(
        "127.0.0.1", port, tmp_path_factory.mktemp("varnish"), vcl_source=DEFAULT_VCL
    ) as varnish:
        spec = dataclasses.replace(
            SERVICES["gateway"],
            # Not its own timeline and cache: the session stack's.
            depends_on=(),
            env=_gateway_env(stack),
        )
        gateway = Stack(
            tmp_path_factory.mktemp("gateway-behind-varnish"),
            services=("gateway",),
            registry={"gateway": spec},
            ports={"GATEWAY_PORT": port},
            env={
                "gateway": {
                    "GATEWAY_CDN_PURGE_URLS": varnish.url,
                    # Varnish appends the client's address to X-Forwarded-For:
                    # rate limits apply to it, not to Varnish's own address.
                    "GATEWAY_TRUSTED_PROXY_HOPS": "1",
                }
            },
        )
        async with gateway:
            await _wait_until_healthy(varnish)
            yield Cdn(varnish, gateway.gateway_url)


@pytest.fixture
async def client(cdn: Cdn) -> AsyncIterator[httpx.AsyncClient]:
    """Through Varnish. One Accept-Encoding for every request: it is part of
    the cached variant (Vary), and Varnish matches it byte for byte."""
    async with httpx.AsyncClient(
        base_url=cdn.varnish.url, timeout=10, headers={"Accept-Encoding": "gzip"}
    ) as http:
        yield http


@dataclass(frozen=True)
class Users:
    tokens: Callable[[str], str]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens(user)}"}


@pytest.fixture
def users(token_for: Callable[[str], str]) -> Users:
    return Users(token_for)


async def register(client: httpx.AsyncClient, users: Users, *names: str) -> list[str]:
    """Users named ``<name>_<random>``: fresh for every test."""
    made = []
    for name in names:
        user = f"{name}_{secrets.token_hex(4)}"
        reply = await client.post(
            "/v1/users",
            headers=users.auth(user),
            json={"handle": user, "public_key": base64.b64encode(b"pk").decode()},
        )
        assert reply.status_code == 201, reply.text
        made.append(user)
    return made


async def create_post(
    client: httpx.AsyncClient, users: Users, author: str, audience: str = "public"
) -> str:
    post_id = new_uuid7()
    reply = await client.post(
        "/v1/posts",
        headers=users.auth(author),
        json={
            "id": post_id,
            "audience": audience,
            "ciphertext": base64.b64encode(secrets.token_bytes(64)).decode(),
            "key_id": "k1",
        },
    )
    assert reply.status_code == 201, reply.text
    # Writes pass through Varnish, never stored.
    assert reply.headers["x-cache"] == "MISS"
    assert reply.headers["cache-control"] == "no-store"
    return post_id


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def gateway_count(cdn: Cdn, route: str, method: str = "GET", status: str = "200") -> float:
    """``http_server_requests_total`` of the gateway behind Varnish (its own
    /metrics, read directly) for one route template."""
    async with httpx.AsyncClient(base_url=cdn.gateway_url, timeout=5) as direct:
        text = (await direct.get("/metrics")).text
    labels = (f'method="{method}"', f'route="{route}"', f'status_code="{status}"')
    total = 0.0
    for line in text.splitlines():
        if line.startswith("http_server_requests_total{") and all(x in line for x in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def purges(cdn: Cdn, result: str = "ok") -> float:
    async with httpx.AsyncClient(base_url=cdn.gateway_url, timeout=5) as direct:
        text = (await direct.get("/metrics")).text
    prefix = f'murmur_gateway_cdn_purges_total{{result="{result}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def test_a_public_page_is_served_from_varnish(
    cdn: Cdn, client: httpx.AsyncClient, users: Users
) -> None:
    (alice,) = await register(client, users, "alice")
    posted = await create_post(client, users, alice)
    path = f"/v1/users/{alice}/posts"
    before = await gateway_count(cdn, USER_POSTS_ROUTE)

    first = await client.get(path)
    second = await client.get(path)

    assert ids(first) == ids(second) == [posted]
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    # The object's age in Varnish, and the gateway's Cache-Control unchanged
    # for the browser.
    assert "age" in second.headers
    assert second.headers["cache-control"] == PUBLIC
    # A conditional request is answered by Varnish itself, with the Vary and
    # validators the gateway gave the stored copy.
    revalidated = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 304
    assert revalidated.headers["x-cache"] == "HIT"
    assert revalidated.headers["etag"] == first.headers["etag"]
    assert "accept-encoding" in revalidated.headers["vary"].lower()
    # Only the first miss reached the gateway.
    assert await gateway_count(cdn, USER_POSTS_ROUTE) - before == 1


async def test_a_new_post_purges_the_page_and_the_next_read_is_fresh(
    cdn: Cdn, client: httpx.AsyncClient, users: Users
) -> None:
    (alice,) = await register(client, users, "alice")
    old = await create_post(client, users, alice)
    path = f"/v1/users/{alice}/posts"
    # Two cached variants of the page: a purge by tag drops both.
    variants: tuple[dict[str, str], ...] = ({}, {"Accept-Encoding": "br"})
    for headers in variants:
        assert ids(await client.get(path, headers=headers)) == [old]
        cached = await client.get(path, headers=headers)
        assert cached.headers["x-cache"] == "HIT"
    purged_before = await purges(cdn)

    new = await create_post(client, users, alice)

    assert await purges(cdn) - purged_before == 1
    for headers in variants:
        fresh = await client.get(path, headers=headers)
        assert fresh.headers["x-cache"] == "MISS"
        assert ids(fresh) == [new, old]
        again = await client.get(path, headers=headers)
        assert again.headers["x-cache"] == "HIT"
        assert ids(again) == [new, old]


async def test_followers_only_posts_never_reach_the_shared_copy(
    client: httpx.AsyncClient, users: Users
) -> None:
    alice, bob = await register(client, users, "alice", "bob")
    followed = await client.post(f"/v1/users/{alice}/follow", headers=users.auth(bob))
    assert followed.status_code == 200, followed.text
    public = await create_post(client, users, alice)
    private = await create_post(client, users, alice, "followers")
    path = f"/v1/users/{alice}/posts"

    # bob's view first: had Varnish kept it, the anonymous read would get it.
    seen_by_bob = await client.get(path, headers=users.auth(bob))
    assert ids(seen_by_bob) == [private, public]
    anonymous = await client.get(path)
    again = await client.get(path)

    assert ids(anonymous) == ids(again) == [public]
    assert (anonymous.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")


async def test_authenticated_reads_are_never_stored(
    cdn: Cdn, client: httpx.AsyncClient, users: Users
) -> None:
    alice, bob, carol = await register(client, users, "alice", "bob", "carol")
    followed = await client.post(f"/v1/users/{alice}/follow", headers=users.auth(bob))
    assert followed.status_code == 200, followed.text
    public = await create_post(client, users, alice)
    private = await create_post(client, users, alice, "followers")
    path = f"/v1/users/{alice}/posts"
    # The anonymous copy is in Varnish: authenticated reads must not get it.
    await client.get(path)
    assert (await client.get(path)).headers["x-cache"] == "HIT"
    before = await gateway_count(cdn, USER_POSTS_ROUTE)

    views: dict[str, list[list[str]]] = {}
    for reader in (bob, carol, bob, carol):
        reply = await client.get(path, headers=users.auth(reader))
        assert reply.headers["x-cache"] == "MISS"
        assert reply.headers["cache-control"] == PRIVATE
        views.setdefault(reader, []).append(ids(reply))
    homes = []
    for reader in (bob, bob, carol):
        home = await client.get("/v1/timelines/home", headers=users.auth(reader))
        assert home.headers["x-cache"] == "MISS"
        assert home.headers["cache-control"] == PRIVATE
        homes.append(ids(home))

    # Each user got their own view every time (bob follows alice, carol does not).
    assert views[bob] == [[private, public]] * 2
    assert views[carol] == [[public]] * 2
    assert homes == [[private, public], [private, public], []]
    # Every authenticated read reached the gateway.
    assert await gateway_count(cdn, USER_POSTS_ROUTE) - before == 4


async def test_a_deleted_post_leaves_varnish(
    cdn: Cdn, client: httpx.AsyncClient, users: Users
) -> None:
    (alice,) = await register(client, users, "alice")
    kept = await create_post(client, users, alice)
    doomed = await create_post(client, users, alice)
    page, single = f"/v1/users/{alice}/posts", f"/v1/posts/{doomed}"
    for path in (page, single):
        await client.get(path)
        cached = await client.get(path)
        assert cached.status_code == 200, cached.text
        assert cached.headers["x-cache"] == "HIT"
    assert (await client.get(single)).json()["id"] == doomed
    purged_before = await purges(cdn)

    deleted = await client.delete(single, headers=users.auth(alice))

    assert deleted.status_code == 204, deleted.text
    # One PURGE carrying both tags: post:<id> and user:<author>:public.
    assert await purges(cdn) - purged_before == 1
    gone = await client.get(single)
    assert gone.status_code == 404
    assert gone.headers["x-cache"] == "MISS"
    fresh = await client.get(page)
    assert fresh.headers["x-cache"] == "MISS"
    assert ids(fresh) == [kept]
    # The 404 is not stored either: errors never are.
    assert (await client.get(single)).headers["x-cache"] == "MISS"


async def test_purge_tags_stay_inside_varnish(
    cdn: Cdn, client: httpx.AsyncClient, users: Users
) -> None:
    (alice,) = await register(client, users, "alice")
    post_id = await create_post(client, users, alice)
    async with httpx.AsyncClient(base_url=cdn.gateway_url, timeout=10) as direct:
        straight = await direct.get(f"/v1/users/{alice}/posts")
        single = await direct.get(f"/v1/posts/{post_id}")
    # What the gateway sends Varnish...
    assert straight.headers["surrogate-key"] == f"user:{alice}:public"
    assert single.headers["surrogate-key"] == f"post:{post_id}"

    for path in (f"/v1/users/{alice}/posts", f"/v1/posts/{post_id}"):
        for expected in ("MISS", "HIT"):
            reply = await client.get(path)
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-cache"] == expected
            # ...is not what a client gets from Varnish.
            for internal in ("surrogate-key", "xkey", "x-murmur-swr"):
                assert internal not in reply.headers, (path, expected, internal)
            vary = {name.strip().lower() for name in reply.headers["vary"].split(",")}
            assert vary == {"accept-encoding", "accept"}
            assert reply.headers["cache-control"] == PUBLIC


async def test_an_expired_post_leaves_varnish(
    cdn: Cdn, client: httpx.AsyncClient, users: Users
) -> None:
    (alice,) = await register(client, users, "alice")
    kept = await create_post(client, users, alice)
    expiring = new_uuid7()
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    reply = await client.post(
        "/v1/posts",
        headers=users.auth(alice),
        json={
            "id": expiring,
            "audience": "public",
            "ciphertext": base64.b64encode(secrets.token_bytes(64)).decode(),
            "key_id": "k1",
            "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
        },
    )
    assert reply.status_code == 201, reply.text
    page, single = f"/v1/users/{alice}/posts", f"/v1/posts/{expiring}"
    assert ids(await client.get(page)) == [expiring, kept]
    assert (await client.get(single)).status_code == 200
    # The gateway itself stops serving it once the pipeline's expiry job has
    # turned it into a tombstone (every 5 s) and the caches heard of it.
    async with httpx.AsyncClient(base_url=cdn.gateway_url, timeout=5) as direct:
        async with asyncio.timeout(30):
            while (await direct.get(single)).status_code != 404:
                await asyncio.sleep(0.2)
        assert ids(await direct.get(page)) == [kept]

    # Varnish kept the copies no longer than the post lived: the gateway capped
    # s-maxage and the stale windows at the expiry.
    await asyncio.sleep(1)
    assert (await client.get(single)).status_code == 404
    assert ids(await client.get(page)) == [kept]
