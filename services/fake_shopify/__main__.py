"""``python -m services.fake_shopify --db PATH --port N``: run the fake Shopify Admin API.

Prints one line, ``listening http://127.0.0.1:PORT``, once it accepts connections (so a
test that starts it as a subprocess with ``--port 0`` learns the port), then serves until
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from services.fake_shopify.bulk_operations import BulkKnobs
from services.fake_shopify.fault_plan import bulk_error, parse_rule
from services.fake_shopify.http_server import FakeShopifyServer, ServerConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.fake_shopify", description=__doc__)
    p.add_argument("--db", required=True, type=Path, help="store SQLite file (see shopify_seeder)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--token", default="shpat_fake_token", help="the access token clients must send")
    p.add_argument(
        "--api-version",
        action="append",
        dest="versions",
        default=None,
        help="a supported version (repeat); older ones fall forward to the oldest",
    )
    p.add_argument(
        "--webhook-secret",
        default="fake_client_secret",
        help="the app's client secret that signs webhook deliveries",
    )
    p.add_argument("--bucket", type=float, default=1000.0, help="GraphQL bucket size (points)")
    p.add_argument(
        "--restore-rate", type=float, default=50.0, help="GraphQL points restored per second"
    )
    p.add_argument("--rest-bucket", type=int, default=40)
    p.add_argument("--rest-leak-rate", type=float, default=2.0)
    p.add_argument("--canonical-headers", action="store_true", help="Title-Case header names")
    p.add_argument(
        "--no-throttle-status", action="store_true", help="omit extensions.cost.throttleStatus"
    )
    p.add_argument(
        "--fault", action="append", default=[], help="ACTION@N[:graphql|rest], e.g. 503@3"
    )
    p.add_argument(
        "--bulk-fail",
        default=None,
        help="fail the first bulk op: INTERNAL_SERVER_ERROR|TIMEOUT|ACCESS_DENIED",
    )
    p.add_argument("--bulk-page-size", type=int, default=250)
    p.add_argument("--bulk-page-delay", type=float, default=0.0)
    p.add_argument("--bulk-group-objects", choices=("true", "false"), default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = [parse_rule(f) for f in args.fault]
        fail = bulk_error(args.bulk_fail) if args.bulk_fail else None
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    knobs = BulkKnobs(
        page_size=args.bulk_page_size,
        page_delay=args.bulk_page_delay,
        fail_next=fail,
        group_objects=None
        if args.bulk_group_objects is None
        else args.bulk_group_objects == "true",
    )
    config = ServerConfig(
        db_path=args.db,
        host=args.host,
        port=args.port,
        token=args.token,
        webhook_secret=args.webhook_secret,
        bucket_size=args.bucket,
        restore_rate=args.restore_rate,
        rest_bucket_size=args.rest_bucket,
        rest_leak_rate=args.rest_leak_rate,
        canonical_headers=args.canonical_headers,
        report_throttle_status=not args.no_throttle_status,
        faults=faults,
        bulk=knobs,
    )
    if args.versions:
        config.supported_versions = tuple(sorted(args.versions))
    server = FakeShopifyServer(config)
    sys.stdout.write(f"listening {server.base_url}\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
