"""Cache settings from the environment, as the service reads them."""

from __future__ import annotations

import pytest

from murmur_cache.settings import CacheSettings


def test_setting_one_policy_field_keeps_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = CacheSettings()
    monkeypatch.setenv("CACHE_HOME_FEED__TTL_SECONDS", "600")
    monkeypatch.setenv("CACHE_USER_TIMELINE__STALE_IF_ERROR_SECONDS", "5")
    settings = CacheSettings()
    assert settings.home_feed.ttl_seconds == 600
    assert (
        settings.home_feed.stale_while_revalidate_seconds
        == defaults.home_feed.stale_while_revalidate_seconds
        > 0
    )
    assert settings.home_feed.stale_if_error_seconds == defaults.home_feed.stale_if_error_seconds
    assert settings.user_timeline.stale_if_error_seconds == 5
    assert settings.user_timeline.ttl_seconds == defaults.user_timeline.ttl_seconds
    assert (
        settings.user_timeline.stale_while_revalidate_seconds
        == defaults.user_timeline.stale_while_revalidate_seconds
    )
    assert settings.post == defaults.post


def test_stale_windows_can_still_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_HOME_FEED__TTL_SECONDS", "1")
    monkeypatch.setenv("CACHE_HOME_FEED__STALE_WHILE_REVALIDATE_SECONDS", "0")
    monkeypatch.setenv("CACHE_HOME_FEED__STALE_IF_ERROR_SECONDS", "0")
    policy = CacheSettings().home_feed
    assert (policy.ttl_seconds, policy.stale_while_revalidate_seconds) == (1, 0)
    assert policy.stale_if_error_seconds == 0
    assert policy.retention_seconds == 1
