"""``runeshift drill [--rate N] [--scale S] [--chaos none|runeshift|service] [--rollback-from soak] [--json]``.

Exit code 1 when the scorecard breaks a bound (a failed request, a lost write, a write
pause of 1 s or more, a reconcile that is not clean), 2 on an error.
"""

from __future__ import annotations

import typer

from runeshift.console import EXIT_CHECK_FAILED, err, out, print_json, table
from runeshift.drill import DrillOptions, run_drill


def drill(
    rate: float = typer.Option(50.0, "--rate", help="Requests per second through the proxy."),
    scale: float = typer.Option(0.1, "--scale", help="Size of the sample legacy world."),
    seed: int = typer.Option(42, "--seed", help="Seed for data, load and chaos."),
    chaos: str = typer.Option(
        "none",
        "--chaos",
        help="'runeshift': kill the cutover process between steps; 'service': kill the Rune "
        "service before reads move to it (the gate must refuse; it is restarted).",
    ),
    rollback_from: str | None = typer.Option(
        None,
        "--rollback-from",
        help="'soak': advance to the soak stage under load, then roll back to legacy.",
    ),
    keep: bool = typer.Option(False, "--keep", help="Leave the services running afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print the scorecard as JSON."),
) -> None:
    """Start the whole world, load it, run backfill, catch-up, reconcile and the cutover."""
    if chaos not in ("none", "runeshift", "service"):
        raise typer.BadParameter("--chaos must be 'none', 'runeshift' or 'service'")
    if rollback_from not in (None, "soak"):
        raise typer.BadParameter("--rollback-from supports 'soak'")
    options = DrillOptions(
        rate=rate,
        scale=scale,
        seed=seed,
        chaos=chaos,  # type: ignore[arg-type]
        keep=keep,
        rollback_from=rollback_from,
    )
    card = run_drill(
        options, progress=None if as_json else lambda m: err.print(f"[dim]drill:[/] {m}")
    )
    if as_json:
        print_json(card.as_json())
    else:
        rows = [
            ("requests", card.requests),
            ("achieved rate /s", f"{card.achieved_rate:.1f} of {card.rate:.0f}"),
            ("failed requests", card.failed_requests),
            ("acknowledged writes", card.acknowledged_writes),
            ("lost writes", card.lost_writes),
            ("writes held at the switch", card.held_writes),
            (
                "write pause p50 / max s",
                f"{card.write_pause_p50_s:.3f} / {card.write_pause_max_s:.3f}",
            ),
            ("fences held s", f"{card.fence_hold_s:.3f}"),
            ("reconcile", card.reconcile),
            ("chaos kills", f"{card.kills} ({card.chaos})"),
            ("rollback from", card.rollback_from or "-"),
            *[
                (
                    f"switch {name}",
                    f"held {w['fence_hold_s']:.3f} s, {w['held_writes']:.0f} writes waited "
                    f"p50 {w['write_pause_p50_s']:.3f} / max {w['write_pause_max_s']:.3f} s",
                )
                for name, w in card.switches.items()
            ],
            *[
                (f"lag at {stage} s", "-" if v is None else f"{v:.3f}")
                for stage, v in card.lag_at_stage_s.items()
            ],
        ]
        out.print(table("Drill scorecard", ["measure", "value"], rows))
        out.print(
            table(
                "Bounds",
                ["bound", "limit", "measured", "ok"],
                [(b.name, b.limit, b.measured, "yes" if b.ok else "NO") for b in card.bounds],
            )
        )
    if not card.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)
