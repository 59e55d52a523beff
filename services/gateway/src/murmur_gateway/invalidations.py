"""The near cache listens to the cache service's invalidation broadcasts; it is
open only while that stream is (a dropped stream may have lost a drop)."""

from __future__ import annotations

import json
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from murmur_core import nats as murmur_nats
from murmur_core.subjects import CACHE_INVALIDATE
from murmur_gateway.near_cache import NearCache

log = logging.getLogger(__name__)


async def follow_invalidations(nats_url: str, near: NearCache[Any]) -> NatsClient:
    async def lost() -> None:
        near.close()
        log.warning("invalidation stream lost; near cache closed")

    async def back() -> None:
        near.reopen()
        log.info("invalidation stream back; near cache reopened")

    async def on_message(msg: Msg) -> None:
        try:
            tags = json.loads(msg.data).get("tags", [])
        except (ValueError, AttributeError):
            log.warning("ignored a malformed invalidation broadcast")
            return
        near.drop_tags(str(t) for t in tags)

    nc = await murmur_nats.connect(nats_url, name="gateway", on_disconnect=lost, on_reconnect=back)
    await nc.subscribe(CACHE_INVALIDATE, cb=on_message)
    await nc.flush()
    near.reopen()
    return nc
