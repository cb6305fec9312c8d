"""``python -m services.legacy_service --forums-url URL --repo-url URL --port N --admin-port M``.

Serves the Rune API from the legacy databases (see ``legacy_store``), prints ``listening <url>
admin <admin_url>`` once ready, and stops on SIGTERM. ``--ledger-db`` names the side database
holding the request ids (default ``runeshift_standin``, created on the repo server).
"""

from __future__ import annotations

import argparse
import os
import sys

from services.legacy_service.legacy_store import LegacyStore
from services.legacy_service.standin_ledger import DEFAULT_LEDGER_DB
from services.rune_service.__main__ import run_until_signalled
from services.rune_service.http_api import ServiceServer
from services.rune_service.write_fence import DEFAULT_BUDGET_S


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.legacy_service", description=__doc__)
    p.add_argument(
        "--forums-url",
        default=os.environ.get("RUNESHIFT_FORUMS_URL"),
        help="default: $RUNESHIFT_FORUMS_URL",
    )
    p.add_argument(
        "--repo-url",
        default=os.environ.get("RUNESHIFT_REPO_URL"),
        help="default: $RUNESHIFT_REPO_URL",
    )
    p.add_argument("--ledger-db", default=DEFAULT_LEDGER_DB)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--admin-port", type=int, default=0)
    p.add_argument(
        "--fence-budget", type=float, default=DEFAULT_BUDGET_S, help="seconds a held write may wait"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.forums_url or not args.repo_url:
        parser.error(
            "--forums-url and --repo-url (or $RUNESHIFT_FORUMS_URL/_REPO_URL) are required"
        )
    store = LegacyStore(args.forums_url, args.repo_url, ledger_db=args.ledger_db)
    server = ServiceServer(
        store,
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        fence_budget_s=args.fence_budget,
    )
    return run_until_signalled(server)


if __name__ == "__main__":
    sys.exit(main())
