"""The developer's settings for ``make up``: ``.env``, else ``.env.example``,
with real environment variables winning over both."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def parse(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped, ``export``
    and one pair of surrounding quotes allowed. No interpolation, as in docker
    compose's simplest form, so one file serves both."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"line {number}: expected KEY=VALUE, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def settings_file(root: Path) -> Path | None:
    for name in (".env", ".env.example"):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def load(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    path = settings_file(root)
    values = parse(path.read_text()) if path is not None else {}
    values.update(environ)
    return values
