"""``python -m services.rune_service --postgres-url URL --port N --admin-port M``.

Serves the API on ``--port`` and the fence on ``--admin-port`` (0 picks free ports), prints
``listening <url> admin <admin_url>`` once both accept connections, and stops on SIGTERM.
``--legacy-ledger-url mysql://.../runeshift_standin`` lets it answer for writes the legacy
stand-in applied (see ``rune_store``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from services.rune_service.http_api import ServiceServer
from services.rune_service.rune_store import RuneStore
from services.rune_service.write_fence import DEFAULT_BUDGET_S


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.rune_service", description=__doc__)
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("RUNESHIFT_POSTGRES_URL"),
        help="default: $RUNESHIFT_POSTGRES_URL",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--admin-port", type=int, default=0)
    p.add_argument(
        "--fence-budget", type=float, default=DEFAULT_BUDGET_S, help="seconds a held write may wait"
    )
    p.add_argument(
        "--legacy-ledger-url",
        default=os.environ.get("RUNESHIFT_STANDIN_LEDGER_URL"),
        help="the stand-in's ledger database URL (default: $RUNESHIFT_STANDIN_LEDGER_URL)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.postgres_url:
        parser.error("--postgres-url (or $RUNESHIFT_POSTGRES_URL) is required")
    ledger = None
    if args.legacy_ledger_url:
        from services.legacy_service.standin_ledger import StandinLedger

        standin = StandinLedger(args.legacy_ledger_url)
        standin.warm()
        ledger = standin.find
    server = ServiceServer(
        RuneStore(args.postgres_url, legacy_ledger=ledger),
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        fence_budget_s=args.fence_budget,
    )
    return run_until_signalled(server)


def run_until_signalled(server: ServiceServer) -> int:
    """Serve until SIGTERM/SIGINT, then stop accepting and close the store."""

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(f"listening {server.url} admin {server.admin_url}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
