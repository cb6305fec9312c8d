"""``runeshift cutover plan | status | advance | rollback | abort``.

Exit codes: 0 done (or nothing to do), 1 a gate did not hold or a rollback is refused
(the message names the gate or the reason), 2 an error (a step failed; run the command
again to resume from the journal).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from cutover.cutover_plan import PlanOptions, create_plan, open_runner
from cutover.runner import CutoverRunner, RunResult
from runeshift.console import EXIT_CHECK_FAILED, out, print_json, table
from runeshift.settings import load_settings

app = typer.Typer(no_args_is_help=True)

PLAN_ID = typer.Option(None, "--plan-id", help="The plan (default: the newest open one).")
SERVICES_DIR = typer.Option(
    None, "--services-dir", help="Where the services world's state.json is."
)
JSON = typer.Option(False, "--json", help="Print JSON.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print what would happen; change nothing.")


@contextmanager
def _runner(plan_id: str | None, services_dir: Path | None) -> Iterator[CutoverRunner]:
    """The plan's runner; its journal connection is closed however the command ends."""
    runner = open_runner(load_settings(), plan_id, services_dir=services_dir)
    try:
        yield runner
    finally:
        runner.journal.close()


def _render(result: RunResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_json())
    else:
        for line in result.plan:
            out.print(("[dim](dry run)[/] " if result.dry_run else "") + line, highlight=False)
        for gate in result.gates:
            mark = "[green]ok[/]" if gate.ok else "[red]FAILED[/]"
            out.print(f"{mark} {gate.message}", highlight=False)
        if result.steps:
            rows = [(s.stage, s.step, s.action, f"{s.seconds:.3f}") for s in result.steps]
            out.print(table("Steps", ["stage", "step", "action", "seconds"], rows))
        if result.refused:
            out.print(f"[red]refused[/]: {result.refused}", highlight=False)
        if not result.dry_run:
            out.print(f"plan {result.plan_id}: {result.from_stage} -> [bold]{result.stage}[/]")
    if not result.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("plan")
def plan(
    plan_id: str = typer.Option(None, "--plan-id", help="Name the plan (default: generated)."),
    lag_threshold: float = typer.Option(1.0, help="Catch-up lag gate, seconds."),
    pause_budget: float = typer.Option(1.0, help="Largest predicted write pause, seconds."),
    drain_timeout: float = typer.Option(10.0, help="Wait for legacy writes in flight, seconds."),
    catch_up_timeout: float = typer.Option(10.0, help="Wait for the last writes to apply."),
    read_sample: int = typer.Option(20, help="Members whose reads are compared."),
    reconcile_sample: float = typer.Option(
        None, help="Reconcile a fraction of each table (default: everything)."
    ),
    as_json: bool = JSON,
) -> None:
    """Create a cutover plan at stage 'planned' with its thresholds."""
    options = PlanOptions(
        lag_threshold,
        pause_budget_s=pause_budget,
        drain_timeout_s=drain_timeout,
        catch_up_timeout_s=catch_up_timeout,
        read_sample_size=read_sample,
        reconcile_sample=reconcile_sample,
    )
    created = create_plan(load_settings(), plan_id, options)
    if as_json:
        print_json({"plan_id": created, "stage": "planned", "options": options.as_json()})
    else:
        out.print(f"cutover plan [bold]{created}[/] created at stage planned")


@app.command("status")
def status(plan_id: str = PLAN_ID, services_dir: Path = SERVICES_DIR, as_json: bool = JSON) -> None:
    """The plan's stage, applied steps, next stage and journal."""
    with _runner(plan_id, services_dir) as runner:
        found = runner.status()
    if as_json:
        print_json(found.as_json())
        return
    out.print(f"plan [bold]{found.plan_id}[/]: stage [bold]{found.stage}[/]")
    if found.in_progress:
        out.print(f"[yellow]in progress[/]: {found.in_progress} (run 'cutover advance' to resume)")
    if found.next_stage:
        out.print(f"next: {found.next_stage.name} ({found.next_stage.summary})")
    rows = [
        (e.at.strftime("%H:%M:%S.%f")[:-3], e.stage, e.step, e.action, e.status)
        for e in found.entries[-25:]
    ]
    out.print(table("Journal (newest 25)", ["at", "stage", "step", "action", "status"], rows))


@app.command("advance")
def advance(
    to: str = typer.Option(None, "--to", help="Advance through this stage (default: the next)."),
    plan_id: str = PLAN_ID,
    services_dir: Path = SERVICES_DIR,
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
) -> None:
    """Check the next stage's gates and apply its steps; resumes a stage left half done."""
    with _runner(plan_id, services_dir) as runner:
        result = runner.advance(to, dry_run=dry_run)
    _render(result, as_json)


@app.command("rollback")
def rollback(
    plan_id: str = PLAN_ID,
    services_dir: Path = SERVICES_DIR,
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
) -> None:
    """Reverse every applied step: reads and writes go back to legacy."""
    with _runner(plan_id, services_dir) as runner:
        result = runner.rollback(dry_run=dry_run)
    _render(result, as_json)


@app.command("abort")
def abort(
    plan_id: str = PLAN_ID,
    services_dir: Path = SERVICES_DIR,
    dry_run: bool = DRY_RUN,
    as_json: bool = JSON,
) -> None:
    """Roll back and close the plan (a new plan is needed to try again)."""
    with _runner(plan_id, services_dir) as runner:
        result = runner.abort(dry_run=dry_run)
    _render(result, as_json)
