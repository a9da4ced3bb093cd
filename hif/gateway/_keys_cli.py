"""``hif keys new``: issue an API key; the token is printed once, only its hash is stored."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hif.errors import HifError
from hif.gateway.auth import KEY_ID_CHARS, ROLES, token_digest
from hif.gateway.keys import add_key


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hif keys", description="Manage the gateway's API keys.")
    sub = p.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="issue a key: print its token once, append its hash to the keys file")
    new.add_argument("--role", required=True, choices=ROLES)
    new.add_argument("--tenant", default=None, help="the tenant the key is bound to (optional for admin)")
    new.add_argument("--keys", type=Path, default=Path("keys.toml"), help="keys file (created if missing)")
    new.add_argument("--rpm", type=float, default=None, help="chat requests per minute (default unlimited)")
    new.add_argument("--burst", type=int, default=None, help="chat requests at once (default: rpm)")
    new.add_argument("--explain-rpm", type=float, default=None, help="explanations per minute")
    new.add_argument("--explain-burst", type=int, default=None, help="explanations at once")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        token = add_key(
            args.keys,
            role=args.role,
            tenant=args.tenant,
            rpm=args.rpm,
            burst=args.burst,
            explain_rpm=args.explain_rpm,
            explain_burst=args.explain_burst,
        )
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
    key_id = token_digest(token)[:KEY_ID_CHARS]
    print(f"hif: key {key_id} added to {args.keys}; the token is shown only now:", file=sys.stderr)
    print(token)
    return 0
