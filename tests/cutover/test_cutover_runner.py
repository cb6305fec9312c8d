"""The cutover state machine against a real world: a full advance under traffic, dry runs,
rollback from every stage before the write switch, the refusal after it, and the process
killed (``os._exit``) right after every step's journal entry, then resumed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from cutover.cutover_plan import PlanOptions, create_plan, open_runner
from cutover.journal import ABORTED, CutoverJournal
from cutover.runner import CRASH_ENV, CRASH_EXIT_CODE
from cutover.stages import STAGE_ORDER
from services.proxy.runtime_client import Routes
from tests.cutover.conftest import CutoverWorld, Traffic

OPTIONS = PlanOptions(lag_threshold_s=1.0, lag_samples=2, pause_budget_s=1.0)
SWITCH_STEPS = [
    "mark_verification_window",
    "shift_reads",
    "pre_verify_window",
    "hold_writes",
    "drain_catch_up",
    "verify_window",
    "switch_write_route",
    "open_rune_writes",
]


def _runner(cw: CutoverWorld, plan_id: str):
    return open_runner(cw.settings, plan_id, services_dir=cw.services_dir)


def _assert_on_rune(cw: CutoverWorld) -> None:
    assert cw.world.proxy.current_routes() == Routes("rune", "rune")
    rune = cw.world.rune_fence.status()
    assert (rune.writes, rune.held) == ("open", 0)
    assert cw.world.legacy_fence.status().writes == "forward"


def _assert_on_legacy(cw: CutoverWorld) -> None:
    assert cw.world.proxy.current_routes() == Routes("legacy", "legacy")
    assert cw.world.legacy_fence.status().writes == "open"


def test_dry_run_prints_every_gate_and_step_and_changes_nothing(cutover_world: CutoverWorld):
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"dry-{uuid.uuid4().hex[:6]}", OPTIONS)
    runner = _runner(cw, plan_id)
    try:
        result = runner.advance("complete", dry_run=True)
        text = "\n".join(result.plan)
        for stage in STAGE_ORDER:
            assert f"stage {stage}:" in text
        for step in SWITCH_STEPS:
            assert f"apply {step}:" in text
        assert "check gate write_pause_budget" in text
        assert runner.journal.stage() == "planned"
        assert [e.step for e in runner.journal.entries()] == ["plan"]
    finally:
        runner.journal.close()
    _assert_on_legacy(cw)


def test_full_cutover_under_traffic_loses_and_fails_nothing(cutover_world: CutoverWorld):
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"full-{uuid.uuid4().hex[:6]}", OPTIONS)
    traffic = Traffic(cw.world.proxy_url, cw.pairs, rate=40).start()
    try:
        runner = _runner(cw, plan_id)
        try:
            for stage in STAGE_ORDER:
                result = runner.advance()
                assert result.ok, [g.message for g in result.failed_gates]
                assert result.stage == stage
            journal = runner.journal.entries()
        finally:
            runner.journal.close()
    finally:
        traffic.stop()
    _assert_on_rune(cw)
    assert not traffic.failed
    assert traffic.served_by.get("legacy") and traffic.served_by.get("rune")
    assert cw.lost_writes(traffic.acknowledged) == []
    done = {e.step: e.detail for e in journal if e.action == "apply" and e.status == "done"}
    print({k: v for k, v in done["gate:write_pause_budget"].items() if "_s" in k or "input" in k})
    print({k: done[k].get("seconds") for k in SWITCH_STEPS})
    assert done["gate:write_pause_budget"]["predicted_pause_s"] <= 1.0
    hold_to_open = [
        e for e in journal if e.step in ("hold_writes", "open_rune_writes") and e.status != "failed"
    ]
    pause = (hold_to_open[-1].at - hold_to_open[0].at).total_seconds()
    assert pause < 1.0, f"writes were held for {pause:.3f} s"


def test_rollback_from_every_stage_before_the_write_switch_returns_traffic_to_legacy(
    cutover_world: CutoverWorld,
):
    cw = cutover_world
    cw.reset_routes()
    for stage in ("caught_up", "verified", "reads_on_rune"):
        plan_id = create_plan(cw.settings, f"rb-{stage}-{uuid.uuid4().hex[:6]}", OPTIONS)
        runner = _runner(cw, plan_id)
        try:
            assert runner.advance(stage).ok
            if stage == "reads_on_rune":
                assert cw.world.proxy.current_routes() == Routes("rune", "legacy")
            preview = runner.rollback(dry_run=True)
            assert preview.ok and runner.journal.stage() == stage
            result = runner.rollback()
            assert result.ok
            assert runner.journal.applied_steps() == []
            assert STAGE_ORDER.index(result.stage) < STAGE_ORDER.index("caught_up")
        finally:
            runner.journal.close()
        _assert_on_legacy(cw)


def test_rollback_after_the_write_switch_is_refused_with_the_reason(
    cutover_world: CutoverWorld,
):
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"nr-{uuid.uuid4().hex[:6]}", OPTIONS)
    runner = _runner(cw, plan_id)
    try:
        assert runner.advance("writes_on_rune").ok
        result = runner.rollback()
        assert not result.ok and "reverse replication" in (result.refused or "")
        assert runner.journal.stage() == "writes_on_rune"
        aborted = runner.abort()
        assert not aborted.ok and runner.journal.stage() == "writes_on_rune"
        _assert_on_rune(cw)
    finally:
        runner.journal.close()


def test_abort_before_the_switch_closes_the_plan(cutover_world: CutoverWorld):
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"ab-{uuid.uuid4().hex[:6]}", OPTIONS)
    runner = _runner(cw, plan_id)
    try:
        assert runner.advance("reads_on_rune").ok
        assert runner.abort().stage == ABORTED
        with pytest.raises(Exception, match="aborted"):
            runner.advance()
    finally:
        runner.journal.close()
    _assert_on_legacy(cw)


def _cli(cw: CutoverWorld, *args: str, crash_after: int | None = None):
    env = {
        **os.environ,
        "RUNESHIFT_HOME": str(cw.settings.home),
        "RUNESHIFT_FORUMS_URL": cw.settings.forums_url,
        "RUNESHIFT_REPO_URL": cw.settings.repo_url,
        "RUNESHIFT_POSTGRES_URL": cw.settings.postgres_url,
    }
    env.pop(CRASH_ENV, None)
    if crash_after is not None:
        env[CRASH_ENV] = str(crash_after)
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "cutover", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("n", range(1, len(SWITCH_STEPS) + 1), ids=lambda n: SWITCH_STEPS[n - 1])
def test_killed_after_each_step_resumes_to_the_correct_state(cutover_world: CutoverWorld, n: int):
    cw = cutover_world
    cw.reset_routes()
    plan_id = f"kill-{n}-{uuid.uuid4().hex[:6]}"
    create_plan(cw.settings, plan_id, OPTIONS)
    traffic = Traffic(cw.world.proxy_url, cw.pairs, rate=20).start()
    try:
        where = ["--plan-id", plan_id, "--services-dir", str(cw.services_dir)]
        killed = _cli(cw, "advance", "--to", "complete", *where, crash_after=n)
        assert killed.returncode == CRASH_EXIT_CODE, killed.stdout + killed.stderr
        with CutoverJournal(cw.settings.postgres_url, plan_id) as journal:
            last = [e for e in journal.entries() if not e.is_gate][-1]
            assert (last.step, last.action, last.status) == (SWITCH_STEPS[n - 1], "apply", "done")
        resumed = _cli(cw, "advance", "--to", "complete", *where)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finally:
        traffic.stop()
    with CutoverJournal(cw.settings.postgres_url, plan_id) as journal:
        assert journal.stage() == "complete"
        applied = [step for _, step in journal.applied_steps()]
        assert applied == SWITCH_STEPS
        done = [e.step for e in journal.entries() if e.action == "apply" and e.status == "done"]
        for step in SWITCH_STEPS:
            assert done.count(step) == 1, f"{step} applied {done.count(step)} times"
    _assert_on_rune(cw)
    assert not traffic.failed, traffic.failed[:3]
    assert cw.lost_writes(traffic.acknowledged) == []
