"""Regenerate the Python code for protos/ into libs/murmur-protos/src.

`--check` regenerates into a scratch folder and fails when the committed code
differs, so CI catches a .proto edit without a regeneration (or a hand edit).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools  # type: ignore[import-untyped]
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "libs" / "murmur-protos" / "src"
PACKAGE = "murmur"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={Path(sys.executable).parent / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every generated folder is a regular package so tools resolve imports alike.
    for folder in [out / PACKAGE, *(p for p in (out / PACKAGE).rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (out / PACKAGE / "py.typed").touch()


def tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.joinpath(PACKAGE).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code drifted")
    check = parser.parse_args().check
    if not check:
        shutil.rmtree(OUT_ROOT / PACKAGE, ignore_errors=True)
        OUT_ROOT.mkdir(parents=True, exist_ok=True)
        generate(OUT_ROOT)
        print(f"generated {len(tree(OUT_ROOT))} files under {OUT_ROOT.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        fresh_root = Path(scratch)
        generate(fresh_root)
        fresh, committed = tree(fresh_root), tree(OUT_ROOT)
        drift = sorted(set(fresh) ^ set(committed))
        drift += [
            name
            for name in sorted(set(fresh) & set(committed))
            if not filecmp.cmp(fresh[name], committed[name], shallow=False)
        ]
    if drift:
        print("generated protobuf code is out of date; run `make protos`:", file=sys.stderr)
        for name in drift:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("generated protobuf code matches protos/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
