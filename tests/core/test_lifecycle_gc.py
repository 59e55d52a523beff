"""Start-up objects leave the collector's sight once a service has started,
so a full collection walks only what the traffic made."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from murmur_core.lifecycle import freeze_startup_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # other tests run with the collector as usual


def test_startup_objects_are_frozen_and_leave_the_full_collection(unfrozen: None) -> None:
    startup = [{"built": i} for i in range(10_000)]  # a start-up structure
    tracked_before = len(gc.get_objects())
    frozen = freeze_startup_objects()
    assert frozen >= len(startup)
    assert gc.get_freeze_count() == frozen
    # What a full collection walks shrank by at least what was frozen.
    assert len(gc.get_objects()) <= tracked_before - len(startup)
    assert not any(obj is startup[0] for obj in gc.get_objects())
    # Frozen objects are still alive and usable.
    assert startup[9_999]["built"] == 9_999
