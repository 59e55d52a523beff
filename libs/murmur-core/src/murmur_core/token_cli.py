"""Mint a development token: ``python -m murmur_core.token_cli alice``.

Generates the dev key pair on first run (default ``var/dev-keys/``); the gateway
and notifier trust its public half through their settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from murmur_core.auth import ensure_dev_keypair, load_private_key, mint_token

DEFAULT_KEY = Path("var/dev-keys/jwt-ed25519.key")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user_id")
    parser.add_argument("--ttl", type=float, default=24 * 3600, help="lifetime in seconds")
    parser.add_argument("--key", type=Path, default=DEFAULT_KEY, help="Ed25519 private key (PEM)")
    parser.add_argument(
        "--role", action="append", default=[], help="a role claim, e.g. operator (repeatable)"
    )
    args = parser.parse_args()
    ensure_dev_keypair(args.key, args.key.with_suffix(".pub"))
    print(
        mint_token(
            load_private_key(args.key), args.user_id, ttl_seconds=args.ttl, roles=tuple(args.role)
        )
    )


if __name__ == "__main__":
    main()
