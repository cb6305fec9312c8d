"""``runeshift sync [--until-caught-up] [--metrics-port N] [--shopify/--no-shopify]
[--shopify-webhook-port N]`` and ``runeshift sync status``."""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from runeshift.console import EXIT_CHECK_FAILED, err, out, print_json, table
from runeshift.settings import load_settings
from runeshift.sync import SyncOptions, run_sync, sync_status
from runeshift.sync_metrics import MetricsServer, SyncMetrics

app = typer.Typer(invoke_without_command=True)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _live_table(metrics: SyncMetrics) -> Table:
    snap = metrics.snapshot()
    t = Table(
        title=f"runeshift sync ({snap['role']}): {snap['changes_per_second']:,.0f} changes/s, "
        f"queue {snap['queue_depth']}, quarantined {snap['quarantined']}",
        title_justify="left",
    )
    for name in ("source", "lag s", "p50 s", "p99 s", "changes", "txns", "position", "reconnects"):
        t.add_column(name, justify="left" if name in ("source", "position") else "right")
    for name, s in sorted(snap["sources"].items()):
        t.add_row(
            name,
            _seconds(s["lag_seconds"]),
            _seconds(s["lag_p50_seconds"]),
            _seconds(s["lag_p99_seconds"]),
            f"{s['changes']:,}",
            f"{s['transactions']:,}",
            s["position"],
            str(s["reconnects"]),
        )
    if snap["paused_tables"]:
        t.caption = "paused (schema drift): " + ", ".join(snap["paused_tables"])
    return t


def _position(position: dict[str, Any]) -> str:
    if "file" in position:
        return f"{position.get('file')}:{position.get('position')}"
    return f"updated_at {position.get('since')}"  # a Shopify stream's checkpoint


@app.callback()
def sync(
    ctx: typer.Context,
    until_caught_up: bool = typer.Option(
        False,
        "--until-caught-up",
        help="Exit once every source has applied a heartbeat written after start.",
    ),
    metrics_port: int = typer.Option(
        0, "--metrics-port", help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run summary as JSON, no live display."
    ),
    shopify: bool | None = typer.Option(
        None,
        "--shopify/--no-shopify",
        help="Follow the Shopify store too (default: when shopify_base_url is set).",
    ),
    shopify_webhook_port: int | None = typer.Option(
        None,
        "--shopify-webhook-port",
        help="Receive Shopify webhooks on http://127.0.0.1:PORT/webhooks/shopify "
        "(needs shopify_webhook_secret); the poll still runs.",
    ),
) -> None:
    """Follow the legacy binlogs into Rune (SIGTERM drains and commits, then exits)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = SyncMetrics()
    server = None
    if metrics_port:
        server = MetricsServer(metrics.prometheus, metrics_port)
        server.start()
        err.print(f"metrics on http://127.0.0.1:{server.port}/metrics")
    options = SyncOptions(
        until_caught_up=until_caught_up,
        shopify=shopify,
        shopify_webhook_port=shopify_webhook_port,
    )
    try:
        if as_json:
            result = run_sync(settings, options=options, stop=stop, metrics=metrics)
        else:
            with Live(
                get_renderable=lambda: _live_table(metrics), console=err, refresh_per_second=4
            ):
                result = run_sync(settings, options=options, stop=stop, metrics=metrics)
    finally:
        if server is not None:
            server.stop()
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(
            f"sync {result.status}: {result.changes_applied:,} changes in "
            f"{result.transactions_applied:,} source transactions, {result.seconds:.1f} s; "
            f"positions {result.positions}"
        )
        for p in result.paused_tables:
            out.print(f"[yellow]paused[/] {p['table']}: {p['remedy']}")
        if result.shopify is not None:
            streams = result.shopify["streams"]
            written = sum(s["rows_written"] for s in streams.values())
            out.print(
                f"shopify: {result.shopify['polls']} polls, {written:,} rows written, "
                f"{result.shopify['webhooks_applied']} webhooks applied"
                + (f"; [red]error[/] {result.shopify['error']}" if result.shopify["error"] else "")
            )
    if until_caught_up and not result.caught_up:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Lag, position and rates per source, as recorded in the target."""
    result = sync_status(load_settings())
    if as_json:
        print_json(result.as_dict())
        return
    rows = [
        (
            s["source"],
            _seconds(s["lag_seconds"]),
            _seconds(s["lag_measured_seconds_ago"]),
            _position(s["position"]),
            s["position"].get("gtid", ""),
            s["recorded_by"],
            f"{s['changes_applied']:,}",
            "-"
            if s["last_run_changes_per_second"] is None
            else f"{s['last_run_changes_per_second']:,}",
        )
        for s in result.sources
    ]
    follower = "active follower: yes" if result.active else "active follower: none"
    out.print(
        table(
            f"Catch-up ({follower})",
            ["source", "lag s", "measured s ago", "position", "gtid", "by", "changes", "changes/s"],
            rows,
        )
    )
    for p in result.paused_tables:
        out.print(f"[yellow]paused[/] {p['table']} since {p['paused_at']}: {p['remedy']}")
        for f in p["findings"]:
            out.print(f"  {f['kind']} {f.get('column') or ''}: {f['detail']}")
