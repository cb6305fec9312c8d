"""Issue 8: a cutover under traffic to ``soak`` (reverse replication running), then a
rollback from soak: no failed request, every acknowledged write present in legacy at the
end, and both routes back on legacy."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from cutover.cutover_plan import PlanOptions, create_plan, open_runner
from runeshift.connections import mysql_connect
from runeshift.errors import FatalError
from runeshift.reverse_sync import reverse_status
from services.proxy.runtime_client import Routes
from tests.cutover.conftest import CutoverWorld, Traffic, call

# The write pause is bounded by test_cutover_runner; this test is about the way back.
OPTIONS = PlanOptions(lag_threshold_s=1.0, lag_samples=2, pause_budget_s=5.0, soak=True)


def _missing_in_legacy(cw: CutoverWorld, request_ids: list[str]) -> list[str]:
    """Acknowledged writes legacy does not have: not in the stand-in's ledger, and (for a
    write Rune applied) no legacy license row under the Rune row's legacy key."""
    missing = []
    conn = mysql_connect(cw.settings.repo_url)
    try:
        with psycopg.connect(cw.settings.postgres_url, autocommit=True) as pg:
            for rid in request_ids:
                status, body, _ = call("GET", cw.world.legacy_url + f"/writes/{rid}")
                if status == 200 and body.get("applied") and body.get("applied_by") == "legacy":
                    continue
                status, body, _ = call("GET", cw.world.rune_url + f"/writes/{rid}")
                row = pg.execute(
                    "SELECT legacy_license_id FROM rune.licenses WHERE id::text = %s",
                    (body.get("license_id"),),
                ).fetchone()
                legacy_id = row[0] if row else None
                if legacy_id is None:
                    missing.append(rid)
                    continue
                with conn.cursor() as cur:
                    cur.execute("SELECT 1 FROM licenses WHERE id = %s", (legacy_id,))
                    if cur.fetchone() is None:
                        missing.append(rid)
    finally:
        conn.close()
    return missing


def test_rollback_from_soak_under_traffic_loses_and_fails_nothing(
    cutover_world: CutoverWorld,
) -> None:
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"soak-{uuid.uuid4().hex[:6]}", OPTIONS)
    traffic = Traffic(cw.world.proxy_url, cw.pairs, rate=20).start()
    try:
        runner = open_runner(cw.settings, plan_id, services_dir=cw.services_dir)
        try:
            preview = runner.advance("soak", dry_run=True)
            assert any("prepare_reverse_replication" in line for line in preview.plan)
            assert any("limitation" in line for line in preview.plan)
            result = runner.advance("soak")
            assert result.ok, [g.message for g in result.failed_gates]
            assert runner.journal.stage() == "soak"
            assert cw.world.proxy.current_routes() == Routes("rune", "rune")
            assert runner.reverse_replication.unavailable_reason() is None
            traffic._stop.wait(3.0)  # soak: writes land on Rune and flow back
            soaked = reverse_status(cw.settings)
            back = runner.rollback()
            assert back.ok, back.refused
            assert runner.journal.applied_steps() == []
        finally:
            runner.journal.close()
        traffic._stop.wait(2.0)  # writes after the rollback land on legacy again
    finally:
        traffic.stop()
    assert cw.world.proxy.current_routes() == Routes("legacy", "legacy")
    assert cw.world.legacy_fence.status().writes == "open"
    assert not traffic.failed, traffic.failed[:3]
    assert traffic.served_by.get("rune"), "no write was served by Rune during the soak"
    missing = _missing_in_legacy(cw, traffic.acknowledged)
    by_rune = traffic.served_by.get("rune", 0)
    assert missing == [], (
        f"{len(missing)} of {len(traffic.acknowledged)} acknowledged writes are not in legacy "
        f"({by_rune} were served by Rune; the reverse follower had quarantined "
        f"{soaked.rows_quarantined} row(s) during the soak): {missing[:3]}"
    )


def test_rollback_from_soak_with_quarantined_rows_is_refused_and_writes_stay_on_rune(
    cutover_world: CutoverWorld,
) -> None:
    """What the code does today: Rune-created licenses are quarantined on the way back, so
    the rollback refuses before holding anything; traffic stays on Rune, nothing fails."""
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"soakq-{uuid.uuid4().hex[:6]}", OPTIONS)
    traffic = Traffic(cw.world.proxy_url, cw.pairs, rate=20).start()
    try:
        runner = open_runner(cw.settings, plan_id, services_dir=cw.services_dir)
        try:
            result = runner.advance("soak")
            assert result.ok, [g.message for g in result.failed_gates]
            traffic._stop.wait(3.0)
            with pytest.raises(FatalError, match="quarantined"):
                runner.rollback()
            assert runner.journal.stage() == "soak"
            traffic._stop.wait(2.0)
        finally:
            runner.journal.close()
    finally:
        traffic.stop()
    assert cw.world.proxy.current_routes() == Routes("rune", "rune")
    assert cw.world.rune_fence.status().writes == "open"
    assert not traffic.failed, traffic.failed[:3]
    assert cw.lost_writes(traffic.acknowledged) == []
