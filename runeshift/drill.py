"""``runeshift drill``: the whole migration and cutover under load, scored against bounds.

Design note. This orchestrator wires everything, in order: sandbox servers, the sample
legacy world, the target schema, the backfill, the services world (legacy stand-in, Rune
service, HAProxy), the catch-up follower (a thread) and a load generator (its own process,
see ``services.load.load_process``) through the proxy at ``rate`` requests/s (85% reads).
It then drives a cutover plan through every stage, recording the catch-up lag as each
stage is reached. With ``chaos="runeshift"`` the cutover runs as ``runeshift cutover
advance`` subprocesses and each one is killed hard right after a (random) step; the next
one resumes from the journal. With
``chaos="service"`` the Rune service is killed (SIGKILL) just before reads move to it: the
advance must refuse at the services-ready gate, and after a restart the cutover goes on. Afterwards the load
stops and the scorecard is computed from what the clients saw: failed requests, lost
writes (every acknowledged write must be in ``rune.licenses``) and the write pause (the
latency of writes sent while the fences held). The bounds come from issue 7: no failed
request, no lost write, the longest write pause under 1 s.

Nothing here prints: progress goes to the optional callback.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from cutover.catch_up_lag import FollowerLag
from cutover.cutover_plan import PlanOptions, create_plan, open_runner
from cutover.journal import CutoverJournal
from cutover.runner import CRASH_ENV, CRASH_EXIT_CODE, CutoverRunner
from cutover.soak import SOAK
from cutover.stages import STAGE_ORDER
from load.target_schema import upgrade
from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect, pg_connect
from runeshift.errors import FatalError
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.sandbox import Sandbox
from runeshift.settings import Settings, load_settings
from runeshift.sync import SyncOptions, run_sync
from services.legacy_service.standin_ledger import check_ledger_name
from services.load.load_generator import WRITE_KINDS, AckedWrite
from services.load.load_process import LoadProcess
from services.load.world_ids import world_ids_from_rune
from services.load.write_audit import find_lost_writes
from services.world import ServiceWorld

Chaos = Literal["none", "runeshift", "service"]
# With chaos="service" the Rune service is killed just before this stage (reads move to it).
SERVICE_CHAOS_BEFORE = "reads_on_rune"
MAX_PAUSE_S = 1.0
CUTOVER_STEPS = 8  # apply steps in the standard plan: the chaos kill point is drawn from these


@dataclass(frozen=True)
class DrillOptions:
    rate: float = 50.0
    scale: float = 0.1
    seed: int = 42
    chaos: Chaos = "none"
    warmup_s: float = 5.0
    settle_s: float = 3.0
    keep: bool = False
    # "soak": advance to the soak stage (reverse replication running), then roll back.
    rollback_from: str | None = None


@dataclass
class Bound:
    name: str
    limit: str
    measured: str
    ok: bool


@dataclass
class Scorecard:
    rate: float
    achieved_rate: float
    requests: int
    failed_requests: int
    acknowledged_writes: int
    lost_writes: int
    held_writes: int
    write_pause_p50_s: float
    write_pause_max_s: float
    fence_hold_s: float
    lag_at_stage_s: dict[str, float | None]
    reconcile: str
    chaos: str
    kills: int
    seconds: float
    rollback_from: str | None = None
    # Per switch ("to_rune", and "back_to_legacy" after a rollback from soak): fence hold,
    # held writes, their pause p50/max. The fields above are the worst over all switches.
    switches: dict[str, dict[str, float]] = field(default_factory=dict)
    bounds: list[Bound] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(b.ok for b in self.bounds)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cutover_subprocess(
    settings: Settings, services_dir: Path, plan_id: str, kill_after: int | None
) -> int:
    env = {
        **os.environ,
        "RUNESHIFT_HOME": str(settings.home),
        "RUNESHIFT_FORUMS_URL": settings.forums_url,
        "RUNESHIFT_REPO_URL": settings.repo_url,
        "RUNESHIFT_POSTGRES_URL": settings.postgres_url,
    }
    env.pop(CRASH_ENV, None)
    if kill_after is not None:
        env[CRASH_ENV] = str(kill_after)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runeshift.cli",
            "cutover",
            "advance",
            "--to",
            "complete",
            "--plan-id",
            plan_id,
            "--services-dir",
            str(services_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode not in (0, CRASH_EXIT_CODE):
        raise FatalError(f"'runeshift cutover advance' failed:\n{done.stdout}\n{done.stderr}")
    return done.returncode


def find_lost_in_legacy(
    settings: Settings, ledger_db: str, acknowledged: list[AckedWrite]
) -> list[AckedWrite]:
    """Acknowledged writes legacy does not have after a rollback: neither in the stand-in's
    ledger (applied by legacy) nor, for a write Rune applied, a legacy ``licenses`` row
    under the Rune row's ``legacy_license_id`` (brought back by reverse replication)."""
    check_ledger_name(ledger_db)
    lost: list[AckedWrite] = []
    conn = mysql_connect(settings.require("repo_url"))
    try:
        with pg_connect(settings.require("postgres_url"), autocommit=True) as pg:
            for write in acknowledged:
                with conn.cursor() as cur:
                    cur.execute(
                        f"SELECT 1 FROM `{ledger_db}`.write_requests WHERE request_id = %s",
                        (write.request_id,),
                    )
                    if cur.fetchone() is not None:
                        continue
                row = pg.execute(
                    "SELECT legacy_license_id FROM rune.licenses WHERE id::text = %s",
                    (write.license_id,),
                ).fetchone()
                if row is None or row[0] is None:
                    lost.append(write)
                    continue
                with conn.cursor() as cur:
                    cur.execute("SELECT 1 FROM licenses WHERE id = %s", (row[0],))
                    if cur.fetchone() is None:
                        lost.append(write)
    finally:
        conn.close()
    return lost


def _kill_service_and_see_the_gate_refuse(
    runner: CutoverRunner, world: ServiceWorld, settings: Settings
) -> None:
    """Kill the Rune service just before the stage that routes reads to it: that advance
    must refuse at the services-ready gate (traffic stays on legacy, nothing fails); after a
    restart on the same ports the cutover goes on."""
    world.kill("rune")
    refused = runner.advance()
    gates = [g.gate for g in refused.failed_gates]
    if refused.ok or "services_ready" not in gates:
        raise FatalError(
            f"the cutover did not refuse to route to a dead Rune service (failed gates: {gates})"
        )
    world.restart(settings, "rune")
    world.proxy.wait_healthy(timeout_s=30)


def run_drill(options: DrillOptions, *, progress: Callable[[str], None] | None = None) -> Scorecard:
    """Run the drill (see the module note) and score it."""
    say = progress or (lambda _: None)
    started = time.monotonic()
    home = load_settings().home
    say("sandbox: MariaDB (ROW binlog) + PostgreSQL")
    status = Sandbox(home).up()
    mysql_url = status.servers[0].url
    say(f"legacy world at scale {options.scale}")
    generate_legacy_world(mysql_url, scale=options.scale, seed=options.seed)
    settings = load_settings()
    pg_url = settings.require("postgres_url")
    upgrade(pg_url)
    say("backfill")
    run_backfill(settings)
    services_dir = home / "drill-services"
    say("services: legacy stand-in, Rune, HAProxy")
    world = ServiceWorld.start(settings, state_dir=services_dir)
    stop_sync = threading.Event()
    follower = threading.Thread(
        target=run_sync,
        args=(settings,),
        kwargs={"options": SyncOptions(), "stop": stop_sync},
        daemon=True,
    )
    load: LoadProcess | None = None
    try:
        world.proxy.route_reads("legacy")
        world.proxy.route_writes("legacy")
        world.legacy_fence.open()
        world.rune_fence.open()
        follower.start()
        lag = FollowerLag(settings)
        deadline = time.monotonic() + 60
        while lag.read().lag_s is None:
            if time.monotonic() > deadline:
                raise FatalError("the catch-up follower measured no lag within 60 s")
            time.sleep(0.2)
        say(f"load: {options.rate:.0f} requests/s through {world.proxy_url}")
        # Its own process: the clients must not take the GIL from the follower and the cutover.
        load = LoadProcess(
            world.proxy_url, options.rate, world_ids_from_rune(pg_url), seed=options.seed
        ).start()
        load_started_wall = load.started_wall
        time.sleep(options.warmup_s)
        soak = options.rollback_from == "soak"
        if options.rollback_from not in (None, "soak"):
            raise FatalError(f"--rollback-from supports 'soak', not {options.rollback_from!r}")
        if soak and options.chaos != "none":
            raise FatalError("--rollback-from soak runs without --chaos")
        plan_id = create_plan(settings, None, PlanOptions(soak=soak))
        lags: dict[str, float | None] = {}
        kills = 0
        if options.chaos == "runeshift":
            rnd = random.Random(options.seed)
            while True:
                kill_after = rnd.randint(1, 3)
                say(f"cutover advance (killed after {kill_after} step(s))")
                code = _cutover_subprocess(settings, services_dir, plan_id, kill_after)
                with CutoverJournal(pg_url, plan_id) as journal:
                    lags[journal.stage()] = lag.read().lag_s
                    if journal.stage() == STAGE_ORDER[-1]:
                        break
                kills += code == CRASH_EXIT_CODE
        else:
            runner = open_runner(settings, plan_id, services=world, ledger_db=world.state.ledger_db)
            try:
                for stage in runner.stages.names:
                    if options.chaos == "service" and stage == SERVICE_CHAOS_BEFORE:
                        say("chaos: kill -9 the Rune service before reads move to it")
                        _kill_service_and_see_the_gate_refuse(runner, world, settings)
                        kills += 1
                    result = runner.advance()
                    if not result.ok:
                        raise FatalError(
                            "the cutover stopped: "
                            + "; ".join(g.message for g in result.failed_gates)
                        )
                    lags[stage] = lag.read().lag_s
                    say(f"stage {stage} reached (lag {lags[stage]})")
                    if soak and stage == SOAK:
                        time.sleep(options.settle_s)  # writes land on Rune and flow back
                        say("rollback from soak")
                        back = runner.rollback()
                        if not back.ok:
                            raise FatalError(f"the rollback from soak was refused: {back.refused}")
                        lags["rolled_back"] = lag.read().lag_s
                        break
            finally:
                runner.journal.close()
        time.sleep(options.settle_s)
        summary = load.stop()
        acked = load.acknowledged
        outcomes = load.outcomes
        load = None
        say("lost-write audit")
        lost = (
            find_lost_in_legacy(settings, world.state.ledger_db, acked)
            if soak
            else find_lost_writes(pg_url, acked)
        )
        with CutoverJournal(pg_url, plan_id) as journal:
            entries = journal.entries()
        done = [e for e in entries if e.action == "apply" and e.status == "done"]
        hold = [e for e in entries if e.step == "hold_writes" and e.status == "started"]
        opened = [e for e in done if e.step == "open_rune_writes"]
        reconcile = next(
            (
                str(e.detail.get("reconcile"))
                for e in reversed(done)
                if e.step == "gate:reconcile_clean"
            ),
            "not run",
        )
        # Each switch: hold .. open. Legacy -> Rune (hold_writes .. open_rune_writes); with a
        # soak also the way back (the rollback's hold .. the legacy fence opening again).
        windows: dict[str, tuple[Any, Any]] = {}
        if hold and opened:
            windows["to_rune"] = (hold[0].at if soak else hold[-1].at, opened[-1].at)
        if soak:
            back_hold = [
                e for e in entries if e.step == "start_reverse_follower" and e.action == "reverse"
            ]
            back_open = [
                e
                for e in entries
                if e.step == "hold_writes" and e.action == "reverse" and e.status == "done"
            ]
            if back_hold and back_open:
                # The rollback verifies in full before it holds anything; the hold began
                # held_s before the step finished.
                last = back_hold[-1]
                held_s = last.detail.get("held_s") if last.status == "done" else None
                start = last.at - timedelta(seconds=held_s) if held_s else back_hold[0].at
                windows["back_to_legacy"] = (start, back_open[-1].at)
        switches: dict[str, dict[str, float]] = {}
        held: list[float] = []
        for switch, (a, b) in windows.items():
            t0 = a.timestamp() - load_started_wall
            t1 = b.timestamp() - load_started_wall
            waits = [
                o.latency_ms / 1000
                for o in outcomes
                if o.kind in WRITE_KINDS and t0 - 0.05 <= o.sent_at <= t1 + 0.05
            ]
            switches[switch] = {
                "fence_hold_s": round(t1 - t0, 4),
                "held_writes": len(waits),
                "write_pause_p50_s": round(_percentile(waits, 0.5), 4),
                "write_pause_max_s": round(max(waits, default=0.0), 4),
            }
            held += waits
        fence_hold = max((w["fence_hold_s"] for w in switches.values()), default=0.0)
        card = Scorecard(
            rate=options.rate,
            achieved_rate=summary.achieved_rate,
            requests=summary.requests,
            failed_requests=summary.failed,
            acknowledged_writes=len(acked),
            lost_writes=len(lost),
            held_writes=len(held),
            write_pause_p50_s=round(_percentile(held, 0.5), 4),
            write_pause_max_s=round(max(held, default=0.0), 4),
            fence_hold_s=round(fence_hold, 4),
            switches=switches,
            lag_at_stage_s=lags,
            reconcile=reconcile,
            chaos=options.chaos,
            kills=kills,
            seconds=round(time.monotonic() - started, 1),
            failures=dict(summary.failures),
            rollback_from=options.rollback_from,
        )
        card.bounds = [
            Bound("failed requests", "0", str(card.failed_requests), card.failed_requests == 0),
            Bound("lost writes", "0", str(card.lost_writes), card.lost_writes == 0),
            Bound(
                "write pause max",
                f"< {MAX_PAUSE_S:.1f} s",
                f"{card.write_pause_max_s:.3f} s",
                card.write_pause_max_s < MAX_PAUSE_S,
            ),
            Bound("reconcile", "clean", card.reconcile, card.reconcile == "clean"),
        ]
        return card
    finally:
        if load is not None:
            load.abandon()
        stop_sync.set()
        follower.join(timeout=60)
        if not options.keep:
            world.stop()
