"""``runeshift sample legacy`` (later also ``sample shopify`` and ``sample traffic``)."""

from __future__ import annotations

import typer
from rich.progress import (
    TaskID,
)

from runeshift.console import out, print_json, progress_bar, table
from runeshift.sample.legacy_world import generate_legacy_world, legacy_targets
from runeshift.settings import load_settings

app = typer.Typer(no_args_is_help=True)


@app.command("legacy")
def legacy(
    scale: float = typer.Option(
        1.0, "--scale", min=0.01, help="1 = ~2,000 members, ~10,000 licenses."
    ),
    seed: int = typer.Option(1, "--seed", help="Same seed, same bytes; another seed, other data."),
    as_json: bool = typer.Option(False, "--json", help="Print the row counts as JSON."),
) -> None:
    """Drop, recreate and fill the legacy databases named by forums_url and repo_url.

    Both must be on one server; their database names (default tribot_forums, tribot_repo)
    are what gets dropped and rebuilt.
    """
    settings = load_settings()
    server, forums_db, repo_db = legacy_targets(
        settings.require("forums_url"), settings.require("repo_url")
    )
    with progress_bar(transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        summary = generate_legacy_world(
            server,
            scale=scale,
            seed=seed,
            forums_db=forums_db,
            repo_db=repo_db,
            progress=progress,
        )
    if as_json:
        print_json(summary.as_dict())
        return
    rows = [(name, count) for name, count in summary.rows.items()]
    rows.append(("total", summary.total_rows))
    out.print(
        table(
            f"Legacy world: scale {summary.scale:g}, seed {summary.seed}, "
            f"{summary.seconds:.1f} seconds",
            ["table", "rows"],
            rows,
        )
    )


@app.command("shopify")
def shopify(
    scale: float = typer.Option(1.0, "--scale", min=0.0, help="Store-only orders: 1,000 per unit."),
    seed: int = typer.Option(1, "--seed", help="Use the seed the legacy world was made with."),
    db: str = typer.Option(
        "", "--db", help="Store file (default: <RUNESHIFT_HOME>/shopify-store.db)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Build the fake Shopify store from the legacy world; serve it with
    ``python -m services.fake_shopify --db PATH``."""
    from runeshift.settings import runeshift_home
    from services.fake_shopify.shopify_seeder import seed_store

    settings = load_settings()
    server, forums_db, repo_db = legacy_targets(
        settings.require("forums_url"), settings.require("repo_url")
    )
    path = db or str(runeshift_home() / "shopify-store.db")
    summary = seed_store(path, server, scale=scale, seed=seed, forums_db=forums_db, repo_db=repo_db)
    if as_json:
        print_json(summary.as_dict())
        return
    rows = [(k, v) for k, v in summary.as_dict().items() if k not in ("db_path", "seconds")]
    out.print(
        table(
            f"Shopify store {summary.db_path}, {summary.seconds:.1f} seconds",
            ["what", "count"],
            rows,
        )
    )


@app.command("traffic")
def traffic(
    rate: float = typer.Option(100.0, "--rate", min=1.0, help="Row writes per second."),
    seconds: float = typer.Option(
        0.0, "--seconds", min=0.0, help="Stop after this long (0: until Ctrl-C/SIGTERM)."
    ),
    seed: int = typer.Option(1, "--seed", help="Same seed, same sequence of actions."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write realistic legacy changes (signups, bans, uploads, licenses, ...) at a steady rate."""
    import signal
    import threading

    from runeshift.sample.legacy_traffic import LegacyTraffic

    settings = load_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    generator = LegacyTraffic(
        settings.require("forums_url"), settings.require("repo_url"), seed=seed
    )
    try:
        summary = generator.run(rate, seconds=seconds or None, stop=stop)
    finally:
        generator.close()
    if as_json:
        print_json(summary.as_dict())
        return
    rows = sorted(summary.actions.items())
    out.print(
        table(
            f"Legacy traffic: {summary.writes:,} writes in {summary.seconds:.1f} s "
            f"({summary.writes_per_second:,.0f}/s)",
            ["action", "count"],
            rows,
        )
    )
