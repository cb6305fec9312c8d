"""The cutover state machine: advances a plan through its stages, rolls it back, aborts it.

Design note. The runner holds no state of its own: the plan's stage and every gate outcome
and step are in the journal (``journal.py``), written before and after each step, so any
process can pick a plan up where another one died. Advancing into a stage checks all its
gates (each failure is reported by name, nothing changes, exit 1), then applies its steps
in order, skipping those the journal shows done and re-applying the one that was running
(steps are idempotent). The Rune service's health is checked before a stage's first step
and after every step, except between steps that keep writes held (``writes_held_after``):
there it is checked before the hold and after the last step, so held writes do not wait
on it.
A step that fails inside a stage with ``undo_on_failure`` has the stage's applied steps
reversed at once, so a failed write switch never leaves writes held. Rolling back reverses
every applied step, newest first; it is refused when an applied step is a point of no
return and reverse replication is not available (the reason is the refusal message).

For crash tests, ``RUNESHIFT_CUTOVER_CRASH_AFTER=N`` makes the process exit hard
(``os._exit``) right after the N-th step's journal entry it writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cutover.gates import GateResult
from cutover.journal import ABORTED, GATE_PREFIX, PLANNED, CutoverJournal, JournalEntry
from cutover.stages import Stage, StageList
from cutover.steps import Step
from runeshift.errors import ConfigError, FatalError, RuneshiftError

CRASH_ENV = "RUNESHIFT_CUTOVER_CRASH_AFTER"
CRASH_EXIT_CODE = 86


class ReverseReplication(Protocol):
    """Whether writes Rune accepted can be carried back to legacy (issue 8)."""

    def unavailable_reason(self) -> str | None: ...


class NoReverseReplication:
    """The default until reverse replication is wired into the cutover."""

    def unavailable_reason(self) -> str | None:
        return (
            "writes are open on Rune and reverse replication is not part of the cutover yet "
            "(issue 8), so writes Rune accepted would be missing on legacy; rolling back "
            "after the write switch is refused"
        )


class HealthCheck(Protocol):
    def rune_ready(self) -> bool: ...


@dataclass
class StepRecord:
    stage: str
    step: str
    action: str
    seconds: float
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "step": self.step,
            "action": self.action,
            "seconds": round(self.seconds, 4),
            "detail": self.detail,
        }


@dataclass
class RunResult:
    """What ``advance``, ``rollback`` or ``abort`` did (or would do, with ``dry_run``)."""

    plan_id: str
    command: str
    from_stage: str
    stage: str
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None and all(g.ok for g in self.gates)

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "command": self.command,
            "from_stage": self.from_stage,
            "stage": self.stage,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "plan": self.plan,
            "gates": [g.as_json() for g in self.gates],
            "steps": [s.as_json() for s in self.steps],
            "refused": self.refused,
        }


@dataclass
class PlanStatus:
    plan_id: str
    stage: str
    options: dict[str, Any]
    applied_steps: list[tuple[str, str]]
    in_progress: str | None
    next_stage: Stage | None
    entries: list[JournalEntry]

    def as_json(self) -> dict[str, Any]:
        nxt = self.next_stage
        return {
            "plan_id": self.plan_id,
            "stage": self.stage,
            "in_progress": self.in_progress,
            "options": self.options,
            "applied_steps": [f"{s}.{n}" for s, n in self.applied_steps],
            "next_stage": None
            if nxt is None
            else {
                "name": nxt.name,
                "summary": nxt.summary,
                "gates": [f"{g.name}: {g.describe()}" for g in nxt.gates],
                "steps": [f"{s.name}: {s.describe()}" for s in nxt.steps],
            },
            "journal": [e.as_json() for e in self.entries],
        }


def _crash_after() -> int | None:
    value = os.environ.get(CRASH_ENV)
    return int(value) if value else None


class CutoverRunner:
    """Drives one plan's journal through a :class:`StageList`; see the module note."""

    def __init__(
        self,
        journal: CutoverJournal,
        stages: StageList,
        health: HealthCheck,
        *,
        reverse_replication: ReverseReplication | None = None,
        health_wait_s: float = 5.0,
        crash_after: int | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> None:
        self.journal = journal
        self.stages = stages
        self.health = health
        self.reverse_replication = reverse_replication or NoReverseReplication()
        self.health_wait_s = health_wait_s
        self.crash_after = crash_after if crash_after is not None else _crash_after()
        self.on_step = on_step
        self._steps_written = 0

    # -- reading -------------------------------------------------------------------------

    def status(self) -> PlanStatus:
        stage = self.journal.stage()
        applied = self.journal.applied_steps()
        reached = self.stages.index(stage) if stage not in (ABORTED,) else len(self.stages.names)
        in_progress = next(
            (s for s, _ in applied if self.stages.index(s) > reached),
            None,
        )
        nxt = None
        if stage != ABORTED and reached + 1 < len(self.stages.names):
            nxt = self.stages.stages[reached + 1]
        return PlanStatus(
            self.journal.plan_id,
            stage,
            self.journal.options(),
            applied,
            in_progress,
            nxt,
            self.journal.entries(),
        )

    # -- advancing -----------------------------------------------------------------------

    def advance(self, to: str | None = None, *, dry_run: bool = False) -> RunResult:
        """Enter the next stage (or every stage up to ``to``); stops at the first failed gate."""
        current = self.journal.stage()
        result = RunResult(self.journal.plan_id, "advance", current, current, dry_run)
        if current == ABORTED:
            raise ConfigError(
                f"cutover plan {self.journal.plan_id!r} was aborted; create a new plan with "
                "'runeshift cutover plan'"
            )
        if current == self.stages.final:
            result.plan.append(f"the plan is at {current}: nothing to advance")
            return result
        targets = self.stages.after(current, to)
        if dry_run:
            for stage in targets:
                result.plan.append(f"stage {stage.name}: {stage.summary}")
                result.plan += [f"  check gate {g.name}: {g.describe()}" for g in stage.gates]
                result.plan += [f"  apply {s.name}: {s.describe()}" for s in stage.steps]
            return result
        self.journal.lock()
        for stage in targets:
            resuming = any(s == stage.name for s, _ in self.journal.applied_steps())
            if not resuming:
                result.gates += self._check_gates(stage)
                if not result.ok:
                    return result
            self._enter(stage, result)
            self.journal.set_stage(stage.name)
            result.stage = stage.name
        return result

    def _check_gates(self, stage: Stage) -> list[GateResult]:
        results = []
        for gate in stage.gates:
            started = time.monotonic()
            outcome = gate.check()
            self.journal.record(
                stage.name,
                GATE_PREFIX + gate.name,
                "apply",
                "done" if outcome.ok else "failed",
                {**outcome.as_json(), "seconds": round(time.monotonic() - started, 4)},
            )
            results.append(outcome)
        return results

    def _enter(self, stage: Stage, result: RunResult) -> None:
        try:
            self._apply_steps(stage, result)
        finally:
            for step in stage.steps:  # close what steps kept open for the stage
                release = getattr(step, "release", None)
                if release is not None:
                    release()

    def _apply_steps(self, stage: Stage, result: RunResult) -> None:
        # ``checked``: health was checked after the previous step and nothing ran since, so
        # the next step's "before" check would repeat it. ``unchecked``: a step that left
        # writes held whose "after" check was deferred (held writes wait on every round
        # trip); the next step runs at once and the check follows the stage's later steps.
        checked = False
        unchecked: Step | None = None
        for index, step in enumerate(stage.steps):
            if self.journal.step_done(stage.name, step.name):
                continue
            if not checked:
                self._check_health(stage.name, step.name, "before")
            self.journal.record(stage.name, step.name, "apply", "started")
            started = time.monotonic()
            try:
                detail = step.apply(self.journal)
            except RuneshiftError as exc:
                self.journal.record(stage.name, step.name, "apply", "failed", {"error": str(exc)})
                if stage.undo_on_failure:
                    self._undo(stage, result)
                raise
            seconds = time.monotonic() - started
            self.journal.record(
                stage.name, step.name, "apply", "done", {**detail, "seconds": round(seconds, 4)}
            )
            self._step_written()
            record = StepRecord(stage.name, step.name, "apply", seconds, detail)
            result.steps.append(record)
            if self.on_step:
                self.on_step(record)
            checked = True
            if getattr(step, "writes_held_after", False) and index + 1 < len(stage.steps):
                unchecked = step
            else:
                unchecked = None
                self._check_health(stage.name, step.name, "after")
        if unchecked is not None:
            self._check_health(stage.name, unchecked.name, "after")

    def _undo(self, stage: Stage, result: RunResult) -> None:
        applied = [n for s, n in self.journal.applied_steps() if s == stage.name]
        steps = {s.name: s for s in stage.steps}
        if any(steps[n].point_of_no_return for n in applied if n in steps):
            return
        for name in reversed(applied):
            if name in steps:
                self._reverse(stage.name, steps[name], result)

    # -- going back ----------------------------------------------------------------------

    def _applied(self) -> list[tuple[Stage, Step]]:
        pairs = []
        for stage_name, step_name in self.journal.applied_steps():
            stage = self.stages.get(stage_name)
            step = next((s for s in stage.steps if s.name == step_name), None)
            if step is None:
                raise FatalError(
                    f"the journal has step {stage_name}.{step_name}, which this runeshift does "
                    "not know; use the runeshift version that wrote the plan"
                )
            pairs.append((stage, step))
        return pairs

    def _refusal(self, current: str, applied: list[tuple[Stage, Step]]) -> str | None:
        if current == self.stages.final:
            return f"the plan is {current}: a finished cutover is not rolled back"
        for stage, step in applied:
            if stage.rollback_refusal:
                return stage.rollback_refusal
            if step.point_of_no_return:
                reason = self.reverse_replication.unavailable_reason()
                if reason:
                    return reason
        return None

    def rollback(self, *, dry_run: bool = False, command: str = "rollback") -> RunResult:
        """Reverse every applied step, newest first: traffic returns to legacy."""
        current = self.journal.stage()
        result = RunResult(self.journal.plan_id, command, current, current, dry_run)
        if current == ABORTED:
            result.plan.append("the plan was aborted: nothing to roll back")
            return result
        applied = self._applied()
        result.refused = self._refusal(current, applied)
        if result.refused:
            return result
        if not applied:
            result.plan.append("no step is applied: traffic is on legacy")
        if dry_run:
            result.plan += [f"reverse {st.name}.{sp.name}: {sp.describe()}" for st, sp in applied]
            return result
        self.journal.lock()
        earliest = min((self.stages.index(st.name) for st, _ in applied), default=None)
        for stage, step in reversed(applied):
            self._reverse(stage.name, step, result)
        if earliest is not None and earliest <= self.stages.index(current) + 1:
            back_to = self.stages.names[earliest - 1] if earliest > 0 else PLANNED
            if self.stages.index(back_to) < self.stages.index(current):
                self.journal.set_stage(back_to)
                result.stage = back_to
        return result

    def abort(self, *, dry_run: bool = False) -> RunResult:
        """Roll back, then close the plan: it cannot be advanced again."""
        result = self.rollback(dry_run=dry_run, command="abort")
        if result.refused or dry_run:
            if dry_run and not result.refused:
                result.plan.append("mark the plan aborted")
            return result
        self.journal.set_stage(ABORTED)
        self.journal.record(ABORTED, "abort", "apply", "done", {"from_stage": result.from_stage})
        result.stage = ABORTED
        return result

    def _reverse(self, stage: str, step: Step, result: RunResult) -> None:
        self._check_health(stage, step.name, "before reversing")
        self.journal.record(stage, step.name, "reverse", "started")
        started = time.monotonic()
        try:
            detail = step.reverse(self.journal)
        except RuneshiftError as exc:
            self.journal.record(stage, step.name, "reverse", "failed", {"error": str(exc)})
            raise
        seconds = time.monotonic() - started
        self.journal.record(
            stage, step.name, "reverse", "done", {**detail, "seconds": round(seconds, 4)}
        )
        self._step_written()
        record = StepRecord(stage, step.name, "reverse", seconds, detail)
        result.steps.append(record)
        if self.on_step:
            self.on_step(record)
        self._check_health(stage, step.name, "after reversing")

    # -- both ----------------------------------------------------------------------------

    def _check_health(self, stage: str, step: str, when: str) -> None:
        deadline = time.monotonic() + self.health_wait_s
        while not self.health.rune_ready():
            if time.monotonic() > deadline:
                raise FatalError(
                    f"the Rune service is not ready {when} step {stage}.{step} (waited "
                    f"{self.health_wait_s:.0f} s); check 'runeshift services status', then run "
                    "the command again: it resumes from the journal"
                )
            time.sleep(0.1)

    def _step_written(self) -> None:
        self._steps_written += 1
        if self.crash_after is not None and self._steps_written >= self.crash_after:
            os._exit(CRASH_EXIT_CODE)
