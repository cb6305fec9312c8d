"""Issue 8: a cutover under traffic to ``soak`` (reverse replication running), then a
rollback from soak: no failed request, every acknowledged write present in legacy at the
end, and both routes back on legacy; under held writes only the rows the soak changed are
verified, yet a difference in a row it did not touch still fails the rollback, and so does
one in the dedup outcome of an account whose rival's email changed. Then a cutover that
soaks and completes: the reverse stream stops, legacy is archived, and rolling back is
refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from cutover.cutover_plan import PlanOptions, create_plan, open_runner
from cutover.runner import CutoverRunner
from cutover.soak import StartReverseFollower, running_follower
from runeshift.archive import verify_archive
from runeshift.connections import mysql_connect
from runeshift.errors import FatalError
from runeshift.reverse_sync import reverse_status
from services.proxy.runtime_client import Routes
from tests.cutover.conftest import CutoverWorld, Traffic
from tests.services.service_http import call

# The in-process reconciliations (the 'verified' gate, verify_reverse) leave psycopg
# connections to the garbage collector; they surface as ResourceWarnings in a later test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# The write pause is bounded by test_cutover_runner; these tests are about the way back.
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
                conn.commit()
    finally:
        conn.close()
    return missing


def _key_sequence_exists(cw: CutoverWorld) -> bool:
    with psycopg.connect(cw.settings.postgres_url, autocommit=True) as pg:
        row = pg.execute("SELECT to_regclass('runeshift.reverse_license_keys')").fetchone()
    return row is not None and row[0] is not None


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
            assert any("limitation" in line for line in preview.plan)  # the store is one-way
            result = runner.advance("soak")
            assert result.ok, [g.message for g in result.failed_gates]
            assert runner.journal.stage() == "soak"
            assert cw.world.proxy.current_routes() == Routes("rune", "rune")
            assert runner.reverse_replication is not None
            assert runner.reverse_replication.unavailable_reason() is None
            assert _key_sequence_exists(cw)
            traffic._stop.wait(3.0)  # soak: writes land on Rune and flow back
            soaked = reverse_status(cw.settings)
            back = runner.rollback()
            assert back.ok, back.refused
            assert runner.journal.applied_steps() == []
            verified = next(s for s in back.steps if s.step == "start_reverse_follower")
            assert verified.detail["verified"] in ("clean", "within_tolerance")
            assert verified.detail["totals"]["quarantined"] == 0
            # Verified in full while writes flowed; under the hold only the rows written since.
            assert verified.detail["via"] == "follower"
            assert verified.detail["pre_verified"]["seconds"] > 0
            assert verified.detail["verified_keys"].get("rune.licenses", 0) >= 1
            # and the legacy binlogs since the live pass (the reverse writer's own skipped)
            assert verified.detail["legacy_binlog"]["read"] is True
        finally:
            runner.journal.close()
        traffic._stop.wait(2.0)  # writes after the rollback land on legacy again
    finally:
        traffic.stop()
    assert cw.world.proxy.current_routes() == Routes("legacy", "legacy")
    assert cw.world.legacy_fence.status().writes == "open"
    assert not _key_sequence_exists(cw)  # Rune no longer hands out legacy keys
    assert not traffic.failed, traffic.failed[:3]
    by_rune = traffic.served_by.get("rune", 0)
    assert by_rune, "no write was served by Rune during the soak"
    assert soaked.rows_quarantined == 0
    missing = _missing_in_legacy(cw, traffic.acknowledged)
    assert missing == [], (
        f"{len(missing)} of {len(traffic.acknowledged)} acknowledged writes are not in legacy "
        f"({by_rune} were served by Rune): {missing[:3]}"
    )
    # and the catch-up brought the writes legacy took after the rollback to Rune
    assert cw.lost_writes(traffic.acknowledged) == []


@contextmanager
def _soaking(cw: CutoverWorld, name: str) -> Iterator[tuple[CutoverRunner, Traffic]]:
    """A cutover to ``soak`` under traffic; on the way out, the journal closed and the
    traffic stopped after a second more of writes."""
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"{name}-{uuid.uuid4().hex[:6]}", OPTIONS)
    traffic = Traffic(cw.world.proxy_url, cw.pairs, rate=20).start()
    try:
        runner = open_runner(cw.settings, plan_id, services_dir=cw.services_dir)
        try:
            result = runner.advance("soak")
            assert result.ok, [g.message for g in result.failed_gates]
            traffic._stop.wait(1.0)
            yield runner, traffic
        finally:
            runner.journal.close()
        traffic._stop.wait(1.0)
    finally:
        traffic.stop()


def _reverse_follower_step(runner: CutoverRunner) -> StartReverseFollower:
    step = next(s for s in runner.stages.get("soak").steps if s.name == "start_reverse_follower")
    assert isinstance(step, StartReverseFollower)
    return step


def _assert_still_soaking(cw: CutoverWorld, runner: CutoverRunner) -> None:
    """A refused rollback left the cutover where it was: writes on Rune, flowing back."""
    assert runner.journal.stage() == "soak"
    assert cw.world.proxy.current_routes() == Routes("rune", "rune")
    assert cw.world.rune_fence.status().writes == "open"
    assert running_follower(cw.settings) is not None


def _rolled_back_verified(runner: CutoverRunner) -> dict[str, Any]:
    """Roll back, which must now succeed; the detail of its verification under the hold."""
    back = runner.rollback()
    assert back.ok, back.refused
    # it verified again: the failed reversal left the step applied
    verified = next(s for s in back.steps if s.step == "start_reverse_follower")
    assert verified.detail["verified"] in ("clean", "within_tolerance")
    return dict(verified.detail)


def _assert_back_on_legacy_with_every_write(cw: CutoverWorld, traffic: Traffic) -> None:
    assert cw.world.proxy.current_routes() == Routes("legacy", "legacy")
    assert cw.world.legacy_fence.status().writes == "open"
    assert not traffic.failed, traffic.failed[:3]
    assert _missing_in_legacy(cw, traffic.acknowledged) == []
    assert cw.lost_writes(traffic.acknowledged) == []


def _flip_refunded(cw: CutoverWorld, legacy_id: int, *, binlogged: bool = False) -> None:
    """Change a legacy license behind the services' backs (updated_at kept, or restoring
    would not undo it). Not ``binlogged``: outside the binlog, so the catch-up does not
    carry it to Rune. ``binlogged``: as a cron job or an admin would, past the fence but
    through the binlog like any client."""
    conn = mysql_connect(cw.settings.repo_url)
    try:
        with conn.cursor() as cur:
            if not binlogged:
                cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(
                "UPDATE licenses SET refunded = 1 - refunded, updated_at = updated_at WHERE id = %s",
                (legacy_id,),
            )
            assert cur.rowcount == 1
        conn.commit()
    finally:
        conn.close()


def _migrated_license(cw: CutoverWorld, offset: int) -> int:
    """A migrated license (traffic only creates licenses, so none it writes)."""
    with psycopg.connect(cw.settings.postgres_url, autocommit=True) as pg:
        row = pg.execute(
            "SELECT legacy_license_id FROM rune.licenses ORDER BY legacy_license_id "
            "OFFSET %s LIMIT 1",
            (offset,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_rollback_from_soak_fails_on_a_difference_in_a_row_the_soak_did_not_touch(
    cutover_world: CutoverWorld,
) -> None:
    cw = cutover_world
    untouched = _migrated_license(cw, 0)
    with _soaking(cw, "soakd") as (runner, traffic):
        _flip_refunded(cw, untouched)
        with pytest.raises(FatalError, match="legacy differs from Rune"):
            runner.rollback()
        _assert_still_soaking(cw, runner)  # and Rune's writes still flow back
        traffic._stop.wait(1.0)
        _flip_refunded(cw, untouched)  # restored: now the rollback succeeds
        _rolled_back_verified(runner)
    _assert_back_on_legacy_with_every_write(cw, traffic)


def test_rollback_from_soak_fails_on_a_write_to_legacy_behind_the_fence_after_the_live_pass(
    cutover_world: CutoverWorld,
) -> None:
    cw = cutover_world
    behind = _migrated_license(cw, 1)
    # The catch-up (running in this world) carries a binlogged legacy write to Rune within a
    # batch; holding the Rune row's lock keeps it from applying until the rollback has
    # verified, as a catch-up lagging behind would.
    lock = psycopg.connect(cw.settings.postgres_url)
    try:
        with _soaking(cw, "soakf") as (runner, traffic):
            step = _reverse_follower_step(runner)

            def write_behind_the_fence() -> None:
                lock.execute(
                    "SELECT 1 FROM rune.licenses WHERE legacy_license_id = %s FOR UPDATE",
                    (behind,),
                )
                _flip_refunded(cw, behind, binlogged=True)

            step.after_live_pass = write_behind_the_fence
            with pytest.raises(
                FatalError, match=rf"legacy differs from Rune: .*rune\.licenses {behind} "
            ):
                runner.rollback()
            step.after_live_pass = None
            _assert_still_soaking(cw, runner)
            lock.rollback()  # the catch-up applies the write: both sides agree again
            traffic._stop.wait(1.0)
            verified = _rolled_back_verified(runner)
            assert verified["legacy_binlog"]["read"] is True
    finally:
        lock.close()
    _assert_back_on_legacy_with_every_write(cw, traffic)


def _case_variant_pair(cw: CutoverWorld) -> tuple[int, int, str]:
    """Two migrated accounts alone on one email (case variants in legacy): the one that
    logs in, the dedup loser (can_login false) and the email."""
    with psycopg.connect(cw.settings.postgres_url, autocommit=True) as pg:
        row = pg.execute(
            "SELECT max(legacy_member_id) FILTER (WHERE can_login), "
            "max(legacy_member_id) FILTER (WHERE NOT can_login), email FROM rune.accounts "
            "WHERE email IS NOT NULL GROUP BY email HAVING count(*) = 2 "
            "AND count(legacy_member_id) = 2 AND count(*) FILTER (WHERE can_login) = 1 "
            "ORDER BY email LIMIT 1"
        ).fetchone()
    assert row is not None, "the sample world has no case-variant email pair"
    return int(row[0]), int(row[1]), str(row[2])


def _set_rune_email(cw: CutoverWorld, legacy_member_id: int, email: str) -> None:
    """An account's email changed on Rune: the reverse follower carries it to legacy."""
    with psycopg.connect(cw.settings.postgres_url, autocommit=True) as pg:
        done = pg.execute(
            "UPDATE rune.accounts SET email = %s WHERE legacy_member_id = %s",
            (email, legacy_member_id),
        )
        assert done.rowcount == 1


def test_rollback_from_soak_fails_when_a_rivals_change_makes_an_untouched_loser_log_in(
    cutover_world: CutoverWorld,
) -> None:
    """The winner of a case-variant email pair moves to a new address on Rune after the live
    pass: legacy then lets the other account log in (it is alone on its address), while
    Rune's row of that account, never written, still says it cannot. Only the winner's row
    changed, so only the dedup losers of the live pass name the other one."""
    cw = cutover_world
    winner, loser, email = _case_variant_pair(cw)
    with _soaking(cw, "soakl") as (runner, traffic):
        step = _reverse_follower_step(runner)
        step.after_live_pass = lambda: _set_rune_email(
            cw, winner, f"moved-{uuid.uuid4().hex[:8]}@example.com"
        )
        with pytest.raises(
            FatalError,
            match=rf"legacy differs from Rune: .*rune\.accounts {loser} \(changed\)",
        ):
            runner.rollback()
        step.after_live_pass = None
        _assert_still_soaking(cw, runner)
        _set_rune_email(cw, winner, email)  # back on the pair's address: the winner again
        traffic._stop.wait(1.0)
        losers = _rolled_back_verified(runner)["dedup_losers"]
        assert losers["live"]["rune.accounts"] >= 1
        assert losers["held"]["rune.accounts"] == losers["live"]["rune.accounts"]
    _assert_back_on_legacy_with_every_write(cw, traffic)


def test_complete_after_soak_stops_the_reverse_stream_and_archives_legacy(
    cutover_world: CutoverWorld,
) -> None:
    cw = cutover_world
    cw.reset_routes()
    plan_id = create_plan(cw.settings, f"soakc-{uuid.uuid4().hex[:6]}", OPTIONS)
    traffic = Traffic(cw.world.proxy_url, cw.pairs, rate=20).start()
    try:
        runner = open_runner(cw.settings, plan_id, services_dir=cw.services_dir)
        try:
            preview = runner.advance("complete", dry_run=True)
            assert any("apply stop_reverse_replication" in line for line in preview.plan)
            assert any("apply archive_legacy" in line for line in preview.plan)
            result = runner.advance("soak")
            assert result.ok, [g.message for g in result.failed_gates]
            traffic._stop.wait(2.0)
            done = runner.advance("complete")
            assert done.ok, [g.message for g in done.failed_gates]
            assert runner.journal.stage() == "complete"
            details = {s.step: s.detail for s in done.steps}
            assert details["stop_reverse_replication"]["rows_quarantined"] == 0
            archive = details["archive_legacy"]
            refused = runner.rollback()
            assert refused.refused and "finished cutover" in refused.refused
        finally:
            runner.journal.close()
        traffic._stop.wait(1.0)  # Rune keeps serving after complete
    finally:
        traffic.stop()
    assert not traffic.failed, traffic.failed[:3]
    assert cw.world.proxy.current_routes() == Routes("rune", "rune")
    assert not reverse_status(cw.settings).prepared  # slot and publication dropped
    assert not _key_sequence_exists(cw)
    checked = verify_archive(archive["location"], archive["archive_id"])
    assert checked.ok, checked.problems[:3]
    assert checked.manifest_sha256 == archive["manifest_sha256"]
    assert cw.lost_writes(traffic.acknowledged) == []
