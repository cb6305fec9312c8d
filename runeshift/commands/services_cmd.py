"""``runeshift services up | status | down | route``: the services being cut over, on loopback."""

from __future__ import annotations

import typer

from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.settings import load_settings
from services.legacy_service.standin_ledger import DEFAULT_LEDGER_DB
from services.proxy.haproxy_config import ServerName
from services.rune_service.write_fence import DEFAULT_BUDGET_S
from services.world import ServiceWorld, WorldStatus, default_state_dir

app = typer.Typer(no_args_is_help=True)


def _render(status: WorldStatus, as_json: bool) -> None:
    if as_json:
        print_json(status.as_json())
        return
    routes = status.routes
    shown = f"reads -> {routes.reads}, writes -> {routes.writes}" if routes else "routes unknown"
    rows = [
        ("proxy", "up" if status.proxy_alive else "down", status.proxy_url, "", "", ""),
        *(
            (
                s.name,
                "ready" if s.ready else "up" if s.alive else "down",
                s.url,
                s.fence.writes if s.fence else "",
                s.fence.in_flight if s.fence else "",
                s.fence.held if s.fence else "",
            )
            for s in status.services
        ),
    ]
    out.print(
        table(
            f"Services in {status.state_dir}",
            ["process", "state", "url", "writes", "in flight", "held"],
            rows,
        )
    )
    out.print(f"proxy {status.proxy_url}: {shown}", highlight=False)


def _attached() -> ServiceWorld | None:
    return ServiceWorld.attach(default_state_dir(load_settings()))


@app.command("up")
def up(
    fence_budget: float = typer.Option(
        DEFAULT_BUDGET_S, "--fence-budget", help="Seconds a held write may wait at a fence."
    ),
    ledger_db: str = typer.Option(
        DEFAULT_LEDGER_DB, "--ledger-db", help="Side database for the stand-in's request ids."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Start the Rune service, the legacy stand-in and HAProxy on loopback (idempotent)."""
    world = ServiceWorld.start(load_settings(), fence_budget_s=fence_budget, ledger_db=ledger_db)
    _render(world.status(), as_json)


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the processes, routes and fences; exit 1 when something is not up."""
    world = _attached()
    if world is None:
        if as_json:
            print_json({"up": False, "services": []})
        else:
            out.print("no services running; start them with 'runeshift services up'")
        raise typer.Exit(EXIT_CHECK_FAILED)
    current = world.status()
    _render(current, as_json)
    if not current.all_up:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("route")
def route(
    reads: ServerName | None = typer.Option(None, "--reads", help="legacy or rune"),
    writes: ServerName | None = typer.Option(None, "--writes", help="legacy or rune"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Move new reads and/or writes to a service (in-flight requests finish where they are).

    This only moves the proxy's route; the write fence is the cutover's job ('runeshift cutover').
    """
    world = _attached()
    if world is None:
        out.print("no services running; start them with 'runeshift services up'")
        raise typer.Exit(EXIT_CHECK_FAILED)
    if reads is not None:
        world.proxy.route_reads(reads)
    if writes is not None:
        world.proxy.route_writes(writes)
    _render(world.status(), as_json)


@app.command("down")
def down() -> None:
    """Stop HAProxy and both services."""
    world = _attached()
    if world is None:
        out.print("no services running")
        return
    world.stop()
    out.print("services stopped")
