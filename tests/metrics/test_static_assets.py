"""The dashboard's static files: vendored copies in step with npm, nothing
loaded from another origin, and every element id that scripts look up
present in index.html (a missing one would only show as a broken page)."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STATIC = REPO_ROOT / "services" / "metrics" / "src" / "murmur_metrics" / "static"
NODE_DIR = REPO_ROOT / "tools" / "node"
CHECK_SCRIPT = NODE_DIR / "dashboard_check.mjs"
# What the browser check and its callers depend on, whatever it reads besides.
CHECK_IDS = {"chart-activity", "chart-requests", "figure-posts-per-minute"}
URL = re.compile(r"https?://", re.IGNORECASE)


def _vendor_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vendor_assets", REPO_ROOT / "scripts" / "vendor_assets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.append(value)
            elif name in ("src", "href", "action", "srcset", "poster", "data"):
                self.references.append(value)


@pytest.fixture(scope="module")
def page() -> _Page:
    parsed = _Page()
    parsed.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return parsed


def own_files() -> list[Path]:
    """The dashboard's hand-written files (vendor/ is checked against npm)."""
    return sorted(
        p for p in STATIC.rglob("*") if p.is_file() and "vendor" not in p.relative_to(STATIC).parts
    )


def test_vendored_files_match_node_modules() -> None:
    vendor = _vendor_script()
    assets: dict[str, Path] = vendor.ASSETS
    vendor_dir: Path = vendor.VENDOR_DIR
    missing = [source for source in assets.values() if not source.is_file()]
    if missing:
        pytest.fail(f"{NODE_DIR}/node_modules lacks {missing}: run `npm ci --prefix {NODE_DIR}`")
    for name, source in assets.items():
        committed = vendor_dir / name
        assert committed.is_file(), f"{committed} is missing: run scripts/vendor_assets.py"
        assert committed.read_bytes() == source.read_bytes(), (
            f"{committed.name} differs from {source}: run scripts/vendor_assets.py"
        )
    assert sorted(p.name for p in vendor_dir.iterdir()) == sorted(assets)


def test_vendored_version_is_the_locked_one() -> None:
    locked = re.search(r'"uplot":\s*"([^"]+)"', (NODE_DIR / "package.json").read_text())
    assert locked is not None, "uplot is not a dependency in tools/node/package.json"
    banner = (STATIC / "vendor" / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]
    assert f"(v{locked.group(1)})" in banner


def test_own_files_name_no_other_origin() -> None:
    files = own_files()
    assert {p.name for p in files} >= {"index.html", "dashboard.js", "dashboard.css"}
    for path in files:
        found = URL.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(STATIC)} names a URL with a scheme"


def test_vendored_code_loads_nothing_from_elsewhere() -> None:
    # uPlot's only URL is its project page in the licence banner comment.
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        content = (STATIC / "vendor" / name).read_text(encoding="utf-8")
        without_banner = re.sub(r"^/\*!.*?\*/", "", content, count=1, flags=re.DOTALL)
        assert not URL.search(without_banner), name


def test_index_references_only_local_assets(page: _Page) -> None:
    assert page.references
    for reference in page.references:
        if reference.startswith("#") or reference == "data:,":
            continue
        assert reference.startswith("/static/"), reference
        assert (STATIC / reference.removeprefix("/static/")).is_file(), reference
    for expected in (
        "/static/dashboard.js",
        "/static/dashboard.css",
        "/static/vendor/uPlot.iife.min.js",
        "/static/vendor/uPlot.min.css",
    ):
        assert expected in page.references


def test_module_imports_resolve() -> None:
    for script in STATIC.glob("*.js"):
        for target in re.findall(r'^import .* from "([^"]+)";$', script.read_text(), re.MULTILINE):
            assert target.startswith("./"), f"{script.name} imports {target}"
            assert (STATIC / target).is_file(), f"{script.name} imports missing {target}"


def test_ids_are_unique(page: _Page) -> None:
    duplicates = {i for i in page.ids if page.ids.count(i) > 1}
    assert not duplicates


def test_browser_check_ids_exist(page: _Page) -> None:
    block = re.search(r"^const IDS = \{$(.*?)^\};$", CHECK_SCRIPT.read_text(), re.M | re.S)
    assert block is not None, "dashboard_check.mjs keeps its ids in `const IDS = {...};`"
    used = set(re.findall(r'"([\w-]+)"', block.group(1)))
    assert used >= CHECK_IDS, "dashboard_check.mjs no longer reads the ids its callers rely on"
    assert used <= set(page.ids), f"missing from index.html: {sorted(used - set(page.ids))}"


def test_dashboard_lookups_exist(page: _Page) -> None:
    # Literal ids handed to the dashboard's own helpers; each throws if absent.
    helpers = "byId|setText|setFigure|setStatus|facts|new Table|activityChart|requestsChart"
    lookup = re.compile(rf'(?:{helpers})\(\s*"([\w-]+)"')
    used = {name for script in STATIC.glob("*.js") for name in lookup.findall(script.read_text())}
    assert used >= CHECK_IDS
    assert used <= set(page.ids), f"missing from index.html: {sorted(used - set(page.ids))}"
