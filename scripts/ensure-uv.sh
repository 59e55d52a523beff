#!/usr/bin/env sh
# Print a command that runs uv, installing the pinned uv from PyPI first if the
# machine has none (a fresh machine has Python and pip, nothing more).
set -eu
UV_VERSION=0.13.8
if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --user "uv==$UV_VERSION" >&2 \
    || "$PYTHON" -m pip install --quiet "uv==$UV_VERSION" >&2
fi
echo "$PYTHON -m uv"
