"""Copy the dashboard's third-party browser files from tools/node/node_modules
into the metrics service's static folder.

The dashboard is served by the metrics service alone (no CDN at run time), so
uPlot's browser build and its licence are committed next to the dashboard.
npm (tools/node/package.json, an exact version) stays the one place that
says which version that is; `--check` fails when the committed copies drifted
from it (after `npm ci --prefix tools/node`), like `gen_protos.py --check`.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tools" / "node" / "node_modules"
VENDOR_DIR = ROOT / "services" / "metrics" / "src" / "murmur_metrics" / "static" / "vendor"

# Committed name -> source under node_modules.
ASSETS: dict[str, Path] = {
    "uPlot.iife.min.js": NODE_MODULES / "uplot" / "dist" / "uPlot.iife.min.js",
    "uPlot.min.css": NODE_MODULES / "uplot" / "dist" / "uPlot.min.css",
    # MIT asks for the notice to travel with the copies.
    "uPlot.LICENSE": NODE_MODULES / "uplot" / "LICENSE",
}


def missing_sources() -> list[Path]:
    return [source for source in ASSETS.values() if not source.is_file()]


def drifted() -> list[str]:
    """Committed names that differ from node_modules, plus strays in VENDOR_DIR."""
    stale = [
        name
        for name, source in ASSETS.items()
        if not (VENDOR_DIR / name).is_file()
        or not filecmp.cmp(source, VENDOR_DIR / name, shallow=False)
    ]
    if VENDOR_DIR.is_dir():
        stale += sorted(p.name for p in VENDOR_DIR.iterdir() if p.name not in ASSETS)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the copies drifted")
    check = parser.parse_args().check
    missing = missing_sources()
    if missing:
        print("missing under node_modules; run `npm ci --prefix tools/node`:", file=sys.stderr)
        for source in missing:
            print(f"  {source.relative_to(ROOT)}", file=sys.stderr)
        return 1
    if check:
        stale = drifted()
        if stale:
            print(
                "vendored dashboard assets differ from tools/node/node_modules;"
                " run `python scripts/vendor_assets.py`:",
                file=sys.stderr,
            )
            for name in stale:
                print(f"  {VENDOR_DIR.relative_to(ROOT)}/{name}", file=sys.stderr)
            return 1
        print("vendored dashboard assets match tools/node/node_modules")
        return 0
    # Start clean so a file dropped from ASSETS does not linger in the package.
    shutil.rmtree(VENDOR_DIR, ignore_errors=True)
    VENDOR_DIR.mkdir(parents=True)
    for name, source in ASSETS.items():
        shutil.copyfile(source, VENDOR_DIR / name)
    print(f"copied {len(ASSETS)} files into {VENDOR_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
