"""Events projected onto a subscription's selection set, without graphql-core
on the hot path. A selection (after fragments, aliases and @skip/@include
are resolved, see operations.py) is a shape: the root field's response key
and the (response key, field) pairs under it. Each distinct shape has one
Projector (interned, bounded), and a Projector encodes each event once
(memoised by stream sequence): a thousand connections with the same
subscription share one encoding of every event; per connection only the
``next`` envelope with its id is added."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from murmur_notifier.events import Delivery
from murmur_notifier.graphql_ws.schema import EVENT_FIELDS, EVENT_TYPE

# (root response key, ((response key, field name), ...))
Shape = tuple[str, tuple[tuple[str, str], ...]]

# Distinct shapes kept; one more evicts the least recently used (its
# subscriptions keep their Projector, new ones get a fresh one).
MAX_PROJECTORS = 256
# Encodings kept per Projector: live events are encoded once for all the
# user's connections at once; a few hundred more serve concurrent replays.
MAX_ENCODED = 256


def _typename(_: Delivery) -> str:
    return EVENT_TYPE.name


class Projector:
    def __init__(self, shape: Shape) -> None:
        root, fields = shape
        self.shape = shape
        self._root = root
        self._readers: tuple[tuple[str, Callable[[Delivery], Any]], ...] = tuple(
            (key, _typename if name == "__typename" else EVENT_FIELDS[name]) for key, name in fields
        )
        # seq -> (event id, encoded): the event id guards against a stream
        # that was recreated and numbers new events from 1 again.
        self._encoded: dict[int, tuple[str, bytes]] = {}

    def encode(self, delivery: Delivery) -> bytes:
        """The ``next`` payload for ``delivery``: ``{"data":{<root>:{...}}}``."""
        cached = self._encoded.get(delivery.seq)
        if cached is not None and cached[0] == delivery.event_id:
            return cached[1]
        event = {key: read(delivery) for key, read in self._readers}
        encoded = json.dumps({"data": {self._root: event}}, separators=(",", ":")).encode()
        if len(self._encoded) >= MAX_ENCODED:
            # Oldest first: sequences arrive roughly in order.
            del self._encoded[next(iter(self._encoded))]
        self._encoded[delivery.seq] = (delivery.event_id, encoded)
        return encoded


_projectors: OrderedDict[Shape, Projector] = OrderedDict()


def projector(shape: Shape) -> Projector:
    """The one Projector of ``shape``."""
    found = _projectors.get(shape)
    if found is not None:
        _projectors.move_to_end(shape)
        return found
    found = _projectors[shape] = Projector(shape)
    if len(_projectors) > MAX_PROJECTORS:
        _projectors.popitem(last=False)
    return found
