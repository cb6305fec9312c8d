"""The gates: conditions that must hold before a stage is entered, one class each.

A gate only looks; it never changes anything, so checking one twice is harmless. Its
result names the gate, says what was measured and, when it fails, what to do. A gate that
cannot even measure (a server down) fails with that reason rather than raising, so
``cutover advance`` reports every failing gate of a stage at once and exits 1.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from cutover.catch_up_lag import LagProbe
from cutover.service_controls import TrafficProxy
from cutover.write_pause_predictor import PausePrediction
from extract.mysql_source_schema import read_live_schemas
from load.target_schema import current, head_revision
from runeshift.connections import mysql_connect, pg_connect
from transform.mapping_drift import check_drift
from transform.mapping_loader import load_mappings


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: ``message`` names the gate and, when it failed, the fix."""

    gate: str
    ok: bool
    message: str
    measured: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "ok": self.ok, "message": self.message, **self.measured}


class Gate(Protocol):
    name: str

    def describe(self) -> str: ...

    def check(self) -> GateResult: ...


def _failed(gate: str, message: str, **measured: Any) -> GateResult:
    return GateResult(gate, False, f"gate '{gate}' failed: {message}", measured)


def _passed(gate: str, message: str, **measured: Any) -> GateResult:
    return GateResult(gate, True, f"gate '{gate}' holds: {message}", measured)


def _mysql_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


class BinlogSettingsGate:
    """Each source writes a full ROW binlog (what the catch-up needs to replay changes)."""

    name = "binlog_settings"
    REQUIRED: ClassVar[dict[str, str]] = {
        "log_bin": "ON",
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
    }

    def __init__(
        self, sources: Mapping[str, str], required: Mapping[str, str] | None = None
    ) -> None:
        self._sources = dict(sources)
        self._required = dict(required or self.REQUIRED)

    def describe(self) -> str:
        wanted = ", ".join(f"{k}={v}" for k, v in self._required.items())
        return f"every source has {wanted}"

    def check(self) -> GateResult:
        problems = []
        for source, url in sorted(self._sources.items()):
            try:
                rows = _mysql_rows(
                    url,
                    "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                    "('log_bin', 'binlog_format', 'binlog_row_image')",
                )
            except Exception as exc:
                return _failed(self.name, f"cannot read {source}'s variables: {exc}")
            found = {str(r[0]): str(r[1]).upper() for r in rows}
            for name, value in self._required.items():
                if found.get(name) != value:
                    problems.append(f"{source}: {name}={found.get(name)} (need {value})")
        if problems:
            return _failed(
                self.name,
                "; ".join(problems) + "; set them in the server config and restart it",
            )
        return _passed(self.name, self.describe())


class ReplicationPrivilegesGate:
    """The runeshift user may read the binlog (REPLICATION SLAVE and CLIENT, or ALL)."""

    name = "privileges"
    NEEDED = ("REPLICATION SLAVE", "REPLICATION CLIENT")

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = dict(sources)

    def describe(self) -> str:
        return "the source user holds " + " and ".join(self.NEEDED)

    def check(self) -> GateResult:
        problems = []
        for source, url in sorted(self._sources.items()):
            try:
                grants = " ".join(str(r[0]).upper() for r in _mysql_rows(url, "SHOW GRANTS"))
            except Exception as exc:
                return _failed(self.name, f"cannot read {source}'s grants: {exc}")
            if "ALL PRIVILEGES ON *.*" in grants:
                continue
            # MariaDB 10.5+ calls REPLICATION CLIENT "BINLOG MONITOR" and SLAVE "REPLICATION REPLICA".
            missing = [
                p
                for p in self.NEEDED
                if p not in grants
                and not (p == "REPLICATION CLIENT" and "BINLOG MONITOR" in grants)
                and not (p == "REPLICATION SLAVE" and "REPLICATION REPLICA" in grants)
            ]
            if missing:
                problems.append(f"{source}: missing {', '.join(missing)}")
        if problems:
            return _failed(
                self.name,
                "; ".join(problems) + "; GRANT them ON *.* to the user in the source URL",
            )
        return _passed(self.name, self.describe())


class MappingsCheckGate:
    """``runeshift mappings check`` is clean: every source column has a rule."""

    name = "mappings_check"

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = dict(sources)

    def describe(self) -> str:
        return "'runeshift mappings check' finds no schema drift"

    def check(self) -> GateResult:
        try:
            findings = check_drift(load_mappings(), read_live_schemas(self._sources))
        except Exception as exc:
            return _failed(self.name, f"the check could not run: {exc}")
        if findings:
            shown = "; ".join(f"{f.kind} {f.table}.{f.column or ''}" for f in findings[:5])
            return _failed(
                self.name,
                f"{len(findings)} finding(s): {shown}; run 'runeshift mappings check' and fix them",
                findings=len(findings),
            )
        return _passed(self.name, "no drift")


class SchemaAtHeadGate:
    """The target schema is at the newest Alembic revision."""

    name = "schema_at_head"

    def __init__(self, postgres_url: str) -> None:
        self._url = postgres_url

    def describe(self) -> str:
        return f"the target schema is at {head_revision()}"

    def check(self) -> GateResult:
        at, head = current(self._url), head_revision()
        if at != head:
            return _failed(
                self.name,
                f"the target is at {at or 'nothing'}, not {head}; run 'runeshift schema upgrade'",
                revision=at,
            )
        return _passed(self.name, f"at {head}", revision=at)


def http_ready(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET {url}/ready`` answers 200."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ready", timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class ServicesReadyGate:
    """Both services answer ``/ready`` and the proxy reports one route per backend."""

    name = "services_ready"

    def __init__(
        self, services: Mapping[str, str], proxy: TrafficProxy, *, wait_s: float = 5.0
    ) -> None:
        self._services = dict(services)
        self._proxy = proxy
        self._wait_s = wait_s

    def describe(self) -> str:
        return f"{' and '.join(sorted(self._services))} answer /ready; the proxy has routes"

    def check(self) -> GateResult:
        deadline = time.monotonic() + self._wait_s
        while True:
            down = [name for name, url in sorted(self._services.items()) if not http_ready(url)]
            if not down or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if down:
            return _failed(
                self.name,
                f"{', '.join(down)} not ready; check 'runeshift services status' and its log",
            )
        try:
            routes = self._proxy.current_routes()
        except Exception as exc:
            return _failed(self.name, f"the proxy did not report its routes: {exc}")
        return _passed(
            self.name,
            f"services ready, reads -> {routes.reads}, writes -> {routes.writes}",
            reads=routes.reads,
            writes=routes.writes,
        )


class BackfillCompleteGate:
    """The newest backfill succeeded and recorded a binlog position for every source."""

    name = "backfill_complete"

    def __init__(self, postgres_url: str, sources: Sequence[str]) -> None:
        self._url = postgres_url
        self._sources = tuple(sources)

    def describe(self) -> str:
        return "the newest backfill run succeeded; positions recorded for " + ", ".join(
            self._sources
        )

    def check(self) -> GateResult:
        with pg_connect(self._url, autocommit=True) as conn:
            run = conn.execute(
                "SELECT id::text, status FROM runeshift.runs WHERE command = 'backfill' "
                "ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
            have = {
                str(r[0])
                for r in conn.execute("SELECT source FROM runeshift.source_positions").fetchall()
            }
        if run is None:
            return _failed(self.name, "no backfill has run; run 'runeshift backfill'")
        if run[1] != "succeeded":
            return _failed(
                self.name,
                f"the newest backfill ({run[0]}) is '{run[1]}'; run 'runeshift backfill' to finish it",
            )
        missing = [s for s in self._sources if s not in have]
        if missing:
            return _failed(self.name, f"no binlog position for {', '.join(missing)}")
        return _passed(self.name, f"backfill {run[0]} succeeded", backfill_run=run[0])


class CatchUpLagGate:
    """The follower runs and its lag stays under the threshold for ``samples`` readings."""

    name = "catch_up_lag"

    def __init__(
        self,
        probe: LagProbe,
        *,
        threshold_s: float,
        samples: int = 4,
        interval_s: float = 0.5,
        max_age_s: float = 3.0,
    ) -> None:
        self._probe = probe
        self.threshold_s = threshold_s
        self._samples = samples
        self._interval_s = interval_s
        self._max_age_s = max_age_s

    def describe(self) -> str:
        return (
            f"catch-up lag under {self.threshold_s:.2f} s in {self._samples} readings "
            f"{self._interval_s:.1f} s apart (steady), measured within {self._max_age_s:.0f} s"
        )

    def check(self) -> GateResult:
        seen: list[float] = []
        for i in range(self._samples):
            if i:
                time.sleep(self._interval_s)
            reading = self._probe.read()
            if not reading.follower_active:
                return _failed(self.name, "no catch-up follower is running; start 'runeshift sync'")
            if reading.lag_s is None or reading.age_s is None:
                return _failed(self.name, "the follower has not measured its lag yet; wait")
            if reading.age_s > self._max_age_s:
                return _failed(
                    self.name,
                    f"the last lag measurement is {reading.age_s:.1f} s old "
                    f"(over {self._max_age_s:.0f} s): the follower is stalled",
                    lag_s=reading.lag_s,
                )
            seen.append(reading.lag_s)
            if reading.lag_s >= self.threshold_s:
                return _failed(
                    self.name,
                    f"lag {reading.lag_s:.3f} s on {reading.worst_source} is not under "
                    f"{self.threshold_s:.2f} s; wait for the catch-up or lower the load",
                    lag_s=reading.lag_s,
                )
        return _passed(
            self.name,
            f"lag max {max(seen):.3f} s over {len(seen)} readings",
            lag_s=max(seen),
            lag_samples=seen,
        )


@dataclass(frozen=True)
class ReconcileOutcome:
    passed: bool
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


class ReconcileCleanGate:
    """A reconciliation (source through the mappings vs target) finds no differences."""

    name = "reconcile_clean"

    def __init__(self, run: Callable[[], ReconcileOutcome]) -> None:
        self._run = run

    def describe(self) -> str:
        return "'runeshift reconcile' passes (differences within the thresholds)"

    def check(self) -> GateResult:
        try:
            outcome = self._run()
        except Exception as exc:
            return _failed(self.name, f"the reconciliation could not run: {exc}")
        if not outcome.passed:
            return _failed(
                self.name,
                f"{outcome.summary}; see 'runeshift reconcile' reports",
                **outcome.detail,
            )
        return _passed(self.name, outcome.summary, **outcome.detail)


class ReadSampleGate:
    """The same reads answered by both services agree (re-checked once after ``settle_s``)."""

    name = "read_sample"

    def __init__(
        self,
        legacy_url: str,
        rune_url: str,
        paths: Callable[[], list[str]],
        *,
        settle_s: float = 1.0,
    ) -> None:
        self._urls = (legacy_url.rstrip("/"), rune_url.rstrip("/"))
        self._paths = paths
        self._settle_s = settle_s

    def describe(self) -> str:
        return "a sample of reads gets the same answer from legacy and Rune"

    @staticmethod
    def _get(url: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return int(resp.status), json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def _differing(self, paths: list[str]) -> list[str]:
        legacy, rune = self._urls
        return [p for p in paths if self._get(legacy + p) != self._get(rune + p)]

    def check(self) -> GateResult:
        try:
            paths = self._paths()
            differing = self._differing(paths)
            if differing:
                # A write the catch-up has not applied yet differs for a moment: look again.
                time.sleep(self._settle_s)
                differing = self._differing(differing)
        except Exception as exc:
            return _failed(self.name, f"the sample could not be read: {exc}")
        if differing:
            return _failed(
                self.name,
                f"{len(differing)} of {len(paths)} reads differ, e.g. {', '.join(differing[:3])}; "
                "run 'runeshift reconcile' on the tables behind them",
                compared=len(paths),
                differing=differing[:20],
            )
        return _passed(self.name, f"{len(paths)} reads agree", compared=len(paths))


class WritePauseBudgetGate:
    """The write pause predicted from lag, change rate and step timings fits the budget."""

    name = "write_pause_budget"

    def __init__(self, predict: Callable[[], PausePrediction], *, budget_s: float) -> None:
        self._predict = predict
        self.budget_s = budget_s

    def describe(self) -> str:
        return f"the predicted write pause is under the {self.budget_s:.2f} s budget"

    def check(self) -> GateResult:
        try:
            prediction = self._predict()
        except Exception as exc:
            return _failed(self.name, f"the pause could not be predicted: {exc}")
        if prediction.total_s > self.budget_s:
            return _failed(
                self.name,
                f"predicted pause {prediction.total_s:.3f} s exceeds the budget "
                f"{self.budget_s:.2f} s ({prediction.explain()}); wait for less lag or load, "
                "or raise --pause-budget",
                **prediction.as_json(),
            )
        return _passed(
            self.name,
            f"predicted pause {prediction.total_s:.3f} s within {self.budget_s:.2f} s",
            **prediction.as_json(),
        )


class RuneWritesOpenGate:
    """After the switch: Rune's writes are open, nothing is held, the proxy sends all to Rune."""

    name = "rune_serving"

    def __init__(self, proxy: TrafficProxy, rune_fence_status: Callable[[], Any]) -> None:
        self._proxy = proxy
        self._status = rune_fence_status

    def describe(self) -> str:
        return "reads and writes route to Rune, Rune's fence is open with nothing held"

    def check(self) -> GateResult:
        try:
            routes = self._proxy.current_routes()
            fence = self._status()
        except Exception as exc:
            return _failed(self.name, f"could not read routes or fence: {exc}")
        if (routes.reads, routes.writes) != ("rune", "rune"):
            return _failed(
                self.name, f"routes are reads -> {routes.reads}, writes -> {routes.writes}"
            )
        if fence.writes != "open" or fence.held:
            return _failed(self.name, f"Rune's fence is {fence.writes} with {fence.held} held")
        return _passed(self.name, "Rune serves reads and writes")
