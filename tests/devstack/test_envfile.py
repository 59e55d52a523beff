"""The .env reader behind `make up`."""

from __future__ import annotations

from pathlib import Path

import pytest

from murmur_devstack import envfile


def test_parse_skips_comments_and_strips_quotes_and_export() -> None:
    text = """
# ports
NATS_PORT=14222
export REDIS_PORT = 16379
GATEWAY_LOG_LEVEL="DEBUG"
EMPTY=
URL='postgresql://u@h/db?x=1'
"""
    assert envfile.parse(text) == {
        "NATS_PORT": "14222",
        "REDIS_PORT": "16379",
        "GATEWAY_LOG_LEVEL": "DEBUG",
        "EMPTY": "",
        "URL": "postgresql://u@h/db?x=1",
    }


def test_parse_rejects_a_line_that_is_not_an_assignment() -> None:
    with pytest.raises(ValueError, match="line 2"):
        envfile.parse("A=1\nnot an assignment\n")


def test_env_file_wins_over_example_and_environment_wins_over_both(tmp_path: Path) -> None:
    assert envfile.load(tmp_path, {"X": "1"}) == {"X": "1"}
    (tmp_path / ".env.example").write_text("NATS_PORT=1\nREDIS_PORT=2\n")
    assert envfile.load(tmp_path, {})["NATS_PORT"] == "1"
    (tmp_path / ".env").write_text("NATS_PORT=3\n")
    loaded = envfile.load(tmp_path, {"GATEWAY_PORT": "4"})
    assert loaded == {"NATS_PORT": "3", "GATEWAY_PORT": "4"}
    assert envfile.load(tmp_path, {"NATS_PORT": "5"})["NATS_PORT"] == "5"
