"""``runeshift reverse prepare | run | drain | status | verify | stop``: Rune -> legacy."""

from __future__ import annotations

import signal
import threading

import typer

from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.reverse_sync import (
    ReverseOptions,
    ReverseStatus,
    drain_reverse,
    finish_reverse,
    prepare_reverse,
    reverse_status,
    run_reverse,
    verify_reverse,
)
from runeshift.settings import load_settings

app = typer.Typer(no_args_is_help=True)


@app.command("prepare")
def prepare(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Open the reverse stream (publication, slot, legacy-side state); run at the write switch."""
    result = prepare_reverse(load_settings())
    if as_json:
        print_json(vars(result))
        return
    out.print(
        f"reverse stream ready at {result.position}: slot {result.slot}, "
        f"{len(result.tables)} tables written back; one-way (never written back): "
        f"{', '.join(result.one_way_tables) or 'none'}"
    )


@app.command("run")
def run(
    until_caught_up: bool = typer.Option(
        False, "--until-caught-up", help="Exit once no committed Rune transaction is pending."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Follow Rune's changes into the legacy databases (SIGTERM drains, then exits)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    result = run_reverse(
        load_settings(), ReverseOptions(until_caught_up=until_caught_up), stop=stop.is_set
    )
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(
            f"reverse {result.status}: {result.transactions_applied:,} Rune transactions "
            f"({result.changes_applied:,} changes) applied, {result.rows_quarantined} "
            f"quarantined, position {result.position}"
        )
    if until_caught_up and not result.caught_up:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("drain")
def drain(
    timeout: float = typer.Option(
        60.0, "--timeout", help="Seconds to wait for a running follower."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Apply everything Rune committed so far, then exit (hold writes first)."""
    result = drain_reverse(load_settings(), timeout_seconds=timeout)
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(
            f"reverse drained to {result.position}: {result.transactions_applied:,} "
            f"transactions applied, {result.rows_quarantined} quarantined"
        )
    if not result.caught_up:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _render(status: ReverseStatus) -> None:
    if not status.prepared:
        out.print("reverse stream: not prepared (run 'runeshift reverse prepare')")
        return
    out.print(
        table(
            "Reverse replication (Rune -> legacy)",
            ["position", "wal", "lag s", "lag bytes", "pending", "applied", "quarantined"],
            [
                (
                    status.position,
                    status.wal_position,
                    f"{status.lag_seconds or 0:.3f}",
                    status.lag_bytes,
                    status.pending_transactions,
                    status.transactions_applied,
                    status.rows_quarantined,
                )
            ],
        )
    )
    for q in status.recent_quarantine:
        out.print(f"[yellow]quarantined[/] {q['source_table']} {q['source_key']}: {q['reason']}")


@app.command("status")
def status(
    max_lag: float = typer.Option(
        0.0, "--max-lag", help="Exit 1 if the lag exceeds this many seconds (0: no check)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Position, lag and pending work of the reverse stream; quarantined rows."""
    result = reverse_status(load_settings())
    if as_json:
        print_json(result.as_dict())
    else:
        _render(result)
    if max_lag and (result.lag_seconds or 0.0) > max_lag:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("verify")
def verify(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Reconcile the reversible tables: legacy (through the mappings) must equal Rune."""
    report = verify_reverse(load_settings())
    if as_json:
        print_json(report.as_dict())
    else:
        rows = [(t.target, t.source_rows, t.target_rows, len(t.differences)) for t in report.tables]
        out.print(
            table(
                "Reverse verification", ["table", "source rows", "target rows", "differences"], rows
            )
        )
        if report.passed:
            out.print("[green]legacy equals Rune[/]")
        for failure in report.failures:
            out.print(f"[red]failed:[/] {failure}")
        for rule, count in sorted(report.excluded.items()):
            out.print(f"excluded by rule {rule}: {count} quarantined row(s)")
    if not report.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("stop")
def stop_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """End the reverse stream for good (cutover complete): drop the slot and publication."""
    result = finish_reverse(load_settings())
    if as_json:
        print_json(result.as_dict())
        return
    out.print(f"reverse stream stopped at {result.position or '-'}; slot dropped")
