"""The one place that builds a cutover: plan options, the standard stages, the runner.

``build_stages`` wires real gates and steps to the settings and the running services
world; ``create_plan`` starts a plan; ``open_runner`` reopens one (the newest open plan by
default) in any process, which is how ``cutover advance`` resumes after a crash.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cutover.catch_up_lag import FollowerLag, LagProbe
from cutover.gates import (
    BackfillCompleteGate,
    BinlogSettingsGate,
    CatchUpLagGate,
    MappingsCheckGate,
    ReadSampleGate,
    ReconcileCleanGate,
    ReconcileOutcome,
    ReplicationPrivilegesGate,
    RuneWritesOpenGate,
    SchemaAtHeadGate,
    ServicesReadyGate,
    WritePauseBudgetGate,
    http_ready,
)
from cutover.journal import CutoverJournal
from cutover.runner import CutoverRunner, ReverseReplication
from cutover.service_controls import ServicesView
from cutover.stages import STAGE_ORDER, Stage, StageList
from cutover.steps import (
    DrainCatchUp,
    HoldWrites,
    MarkVerificationWindow,
    OpenRuneWrites,
    PreVerifyWindow,
    ShiftReads,
    SwitchWriteRoute,
    VerifyWindow,
)
from cutover.warm_connections import MySQLConnections
from cutover.window_verifier import LedgerWindowVerifier, WindowVerifier
from cutover.write_pause_predictor import PauseInputs, PausePrediction, predict_pause
from runeshift.connections import pg_connect
from runeshift.errors import ConfigError
from runeshift.settings import Settings

SOURCES = (("forums", "forums_url"), ("repo", "repo_url"))


@dataclass(frozen=True)
class PlanOptions:
    """The numbers a plan is held to; stored with the plan so every process uses them."""

    lag_threshold_s: float = 1.0
    lag_samples: int = 4
    pause_budget_s: float = 1.0
    drain_timeout_s: float = 10.0
    catch_up_timeout_s: float = 10.0
    read_sample_size: int = 20
    reconcile_sample: float | None = None
    # Issue 8: prepare reverse replication at the write switch and soak before complete.
    soak: bool = False
    soak_timeout_s: float = 60.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def sources(settings: Settings) -> dict[str, str]:
    return {name: settings.require(setting) for name, setting in SOURCES}


class RuneHealth:
    """The Rune service answers ``/ready``."""

    def __init__(self, rune_url: str) -> None:
        self._url = rune_url

    def rune_ready(self) -> bool:
        return http_ready(self._url)


def reconcile_outcome(settings: Settings, sample: float | None) -> ReconcileOutcome:
    """Run ``runeshift reconcile`` in process and summarise it for the gate."""
    from reconcile.reconcile_run import ReconcileOptions, run_reconcile

    report = run_reconcile(settings, ReconcileOptions(sample=sample))
    totals = report.totals()
    return ReconcileOutcome(
        report.passed,
        f"reconcile {report.status}: missing {totals['missing']}, extra {totals['extra']}, "
        f"changed {totals['changed']}, quality failures {totals['quality_failed']}",
        {"reconcile": report.status, "reconcile_run": report.provenance.run_id, **totals},
    )


def read_sample_paths(postgres_url: str, size: int) -> list[str]:
    """Account and license-check reads for ``size`` random migrated members.

    The catalog listing is left out: legacy lists scripts the migration quarantined, which
    Rune (rightly) does not have, and reconciliation accounts for those already.
    """
    with pg_connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM "
            "(SELECT legacy_member_id FROM rune.accounts WHERE legacy_member_id IS NOT NULL "
            " ORDER BY random() LIMIT %s) a, "
            "LATERAL (SELECT legacy_script_id FROM rune.scripts WHERE legacy_script_id IS NOT NULL "
            " ORDER BY random() LIMIT 1) s",
            (size,),
        ).fetchall()
    paths: list[str] = []
    for member, script in rows:
        paths.append(f"/accounts/{member}")
        paths.append(f"/licenses/check?member_id={member}&script_id={script}")
    return paths


class PauseMeasurer:
    """Measures the predictor's inputs just before the write switch."""

    def __init__(
        self,
        lag: LagProbe,
        verifier: WindowVerifier,
        services: ServicesView,
        journal: CutoverJournal,
    ) -> None:
        self._lag = lag
        self._verifier = verifier
        self._services = services
        self._journal = journal

    def _control_rtt(self) -> float:
        times = []
        for _ in range(3):
            started = time.monotonic()
            self._services.rune_fence.status()
            self._services.proxy.current_routes()
            times.append((time.monotonic() - started) / 3)  # status is one call, routes two
        return max(times)

    def predict(self) -> PausePrediction:
        first = self._lag.read()
        started = time.monotonic()
        recent_mark = self._verifier.safe_mark()
        mark = self._journal.latest_detail(MarkVerificationWindow.name) or {}
        full = self._verifier.verify(str(mark.get("since", "9999-12-31")), recent_mark)
        rtt = self._control_rtt()
        time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
        recent = self._verifier.verify(recent_mark)
        second = self._lag.read()
        elapsed = max(time.monotonic() - started, 1e-3)
        rate = max(0, second.changes_applied - first.changes_applied) / elapsed
        lag = max(first.lag_s or 0.0, second.lag_s or 0.0)
        return predict_pause(PauseInputs(lag, rate, recent.rows, recent.seconds, full.seconds, rtt))


def build_stages(
    settings: Settings,
    services: ServicesView,
    options: PlanOptions,
    journal: CutoverJournal,
    *,
    ledger_db: str,
    lag: LagProbe | None = None,
    verifier: WindowVerifier | None = None,
) -> StageList:
    """The standard stages (``STAGE_ORDER``) with their gates and steps."""
    src = sources(settings)
    pg_url = settings.require("postgres_url")
    lag = lag or FollowerLag(settings)
    # Kept open from the step before the hold to the open, then closed (see warm_connections).
    warm = MySQLConnections()
    verifier = verifier or LedgerWindowVerifier(src["repo"], pg_url, ledger_db, connections=warm)
    proxy = services.proxy
    legacy_fence, rune_fence = services.legacy_fence, services.rune_fence
    measurer = PauseMeasurer(lag, verifier, services, journal)
    lag_gate = CatchUpLagGate(lag, threshold_s=options.lag_threshold_s, samples=options.lag_samples)
    drain = DrainCatchUp(
        src, pg_url, legacy_fence, timeout_s=options.catch_up_timeout_s, connections=warm
    )
    service_urls = {"legacy": services.legacy_url, "rune": services.rune_url}
    stages = [
        Stage(
            "preflight",
            "the sources, the mappings, the target schema and the services are ready",
            gates=(
                BinlogSettingsGate(src),
                ReplicationPrivilegesGate(src),
                MappingsCheckGate(src),
                SchemaAtHeadGate(pg_url),
                ServicesReadyGate(service_urls, proxy),
            ),
        ),
        Stage(
            "backfilled",
            "the snapshot is loaded",
            gates=(BackfillCompleteGate(pg_url, [name for name, _ in SOURCES]),),
        ),
        Stage(
            "caught_up",
            "the catch-up follows legacy with little lag, steadily",
            gates=(lag_gate,),
            steps=(MarkVerificationWindow(verifier),),
        ),
        Stage(
            "verified",
            "a reconciliation finds the target equal to the source",
            gates=(
                ReconcileCleanGate(lambda: reconcile_outcome(settings, options.reconcile_sample)),
            ),
        ),
        Stage(
            "reads_on_rune",
            "the proxy sends reads to Rune",
            gates=(
                ServicesReadyGate(service_urls, proxy),
                ReadSampleGate(
                    services.legacy_url,
                    services.rune_url,
                    lambda: read_sample_paths(pg_url, options.read_sample_size),
                ),
            ),
            steps=(ShiftReads(proxy),),
        ),
        Stage(
            "writes_on_rune",
            "writes held, the last legacy writes caught up and verified, then opened on Rune",
            gates=(
                ServicesReadyGate(service_urls, proxy),
                lag_gate,
                WritePauseBudgetGate(measurer.predict, budget_s=options.pause_budget_s),
            ),
            steps=(
                PreVerifyWindow(verifier, drain),
                HoldWrites(
                    legacy_fence,
                    rune_fence,
                    services.legacy_url,
                    drain_timeout_s=options.drain_timeout_s,
                ),
                drain,
                VerifyWindow(verifier),
                SwitchWriteRoute(
                    proxy, legacy_fence, rune_fence, services.rune_url, services.legacy_url
                ),
                OpenRuneWrites(rune_fence),
            ),
        ),
        Stage(
            "complete",
            "Rune serves every request; legacy takes no traffic",
            gates=(RuneWritesOpenGate(proxy, rune_fence.status),),
        ),
    ]
    assert tuple(s.name for s in stages) == STAGE_ORDER
    return StageList(stages)


def new_plan_id() -> str:
    return time.strftime("cutover-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def create_plan(settings: Settings, plan_id: str | None, options: PlanOptions) -> str:
    """Start a plan at ``planned``; its id."""
    plan_id = plan_id or new_plan_id()
    CutoverJournal.create(settings.require("postgres_url"), plan_id, options.as_json()).close()
    return plan_id


def resolve_plan_id(settings: Settings, plan_id: str | None) -> str:
    if plan_id:
        return plan_id
    found = CutoverJournal.latest_open_plan(settings.require("postgres_url"), (STAGE_ORDER[-1],))
    if found is None:
        raise ConfigError("no open cutover plan; create one with 'runeshift cutover plan'")
    return found


def attach_services(settings: Settings, services_dir: Path | None) -> Any:
    """The running services world (``services.world.ServiceWorld``), or a ConfigError."""
    from services.world import ServiceWorld, default_state_dir

    state_dir = (services_dir or default_state_dir(settings)).resolve()
    world = ServiceWorld.attach(state_dir)
    if world is None:
        raise ConfigError(
            f"no services world is recorded in {state_dir}; start one with "
            "'runeshift services up' (or 'runeshift drill')"
        )
    return world


def open_runner(
    settings: Settings,
    plan_id: str | None,
    *,
    services: ServicesView | None = None,
    services_dir: Path | None = None,
    ledger_db: str | None = None,
    reverse_replication: ReverseReplication | None = None,
    lag: LagProbe | None = None,
) -> CutoverRunner:
    """A runner over an existing plan, wired to the running world. Close its journal after."""
    plan_id = resolve_plan_id(settings, plan_id)
    journal = CutoverJournal(settings.require("postgres_url"), plan_id)
    try:
        journal.stage()  # fails clearly for an unknown plan
        options = PlanOptions.from_json(journal.options())
        if services is None:
            world = attach_services(settings, services_dir)
            services = world
            ledger_db = ledger_db or world.state.ledger_db
        stages = build_stages(
            settings,
            services,
            options,
            journal,
            ledger_db=ledger_db or "runeshift_standin",
            lag=lag,
        )
        if options.soak:
            from cutover.soak import SoakReverseReplication, with_soak

            stages = with_soak(
                stages,
                settings,
                services.legacy_fence,
                services.rune_fence,
                services.rune_url,
                lag_threshold_s=options.lag_threshold_s,
                timeout_s=options.soak_timeout_s,
                drain_timeout_s=options.drain_timeout_s,
            )
            reverse_replication = reverse_replication or SoakReverseReplication(settings)
        return CutoverRunner(
            journal,
            stages,
            RuneHealth(services.rune_url),
            reverse_replication=reverse_replication,
        )
    except BaseException:
        journal.close()
        raise
