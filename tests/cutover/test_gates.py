"""Each gate refuses when its condition is false, with a message naming it; and holds when
true. Conditions are made real: a fresh database, a user without grants, a follower row
with high lag under the follower's own lock, HTTP servers that disagree."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from cutover.catch_up_lag import FollowerLag
from cutover.gates import (
    BackfillCompleteGate,
    BinlogSettingsGate,
    CatchUpLagGate,
    MappingsCheckGate,
    ReadSampleGate,
    ReconcileCleanGate,
    ReconcileOutcome,
    ReplicationPrivilegesGate,
    SchemaAtHeadGate,
    ServicesReadyGate,
    WritePauseBudgetGate,
)
from cutover.write_pause_predictor import PauseInputs, predict_pause
from load.target_schema import upgrade
from runeshift.sandbox.server_process import free_port
from runeshift.settings import Settings
from runeshift.sync import SYNC_LOCK


def _refused(result, name: str) -> None:
    assert not result.ok
    assert result.gate == name
    assert f"gate '{name}' failed" in result.message


@pytest.fixture
def empty_mysql_db(mysql_url: str):
    name = f"g_{uuid.uuid4().hex[:8]}"
    from runeshift.connections import mysql_connect

    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield mysql_url + name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {name}")
    conn.close()


def test_binlog_settings(mysql_url: str):
    assert BinlogSettingsGate({"forums": mysql_url}).check().ok
    wrong = BinlogSettingsGate({"forums": mysql_url}, {"binlog_row_image": "MINIMAL"})
    result = wrong.check()
    _refused(result, "binlog_settings")
    assert "binlog_row_image=FULL (need MINIMAL)" in result.message


def test_privileges(mysql_url: str):
    from runeshift.connections import mysql_connect

    assert ReplicationPrivilegesGate({"repo": mysql_url}).check().ok
    user = f"nogrant{uuid.uuid4().hex[:6]}"
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
        cur.execute(f"GRANT SELECT ON *.* TO '{user}'@'%'")
    try:
        host = mysql_url.split("@", 1)[1]
        result = ReplicationPrivilegesGate({"repo": f"mysql://{user}:pw@{host}"}).check()
        _refused(result, "privileges")
        assert "REPLICATION SLAVE" in result.message
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'%'")
        conn.close()


def test_mappings_check_refuses_a_source_without_the_mapped_tables(empty_mysql_db: str):
    result = MappingsCheckGate({"forums": empty_mysql_db}).check()
    _refused(result, "mappings_check")
    assert "missing_table" in result.message


def test_schema_at_head(pg_url: str):
    _refused(SchemaAtHeadGate(pg_url).check(), "schema_at_head")
    upgrade(pg_url)
    assert SchemaAtHeadGate(pg_url).check().ok


def test_backfill_complete_refuses_without_a_backfill(pg_url: str):
    upgrade(pg_url)
    result = BackfillCompleteGate(pg_url, ["forums", "repo"]).check()
    _refused(result, "backfill_complete")
    assert "runeshift backfill" in result.message


class _Proxy:
    def current_routes(self):
        raise ConnectionError("runtime API down")

    def route_reads(self, to):
        raise AssertionError("a gate never routes")

    def route_writes(self, to):
        raise AssertionError("a gate never routes")


def test_services_ready_refuses_a_service_that_does_not_answer():
    url = f"http://127.0.0.1:{free_port()}"
    result = ServicesReadyGate({"rune": url}, _Proxy(), wait_s=0.3).check()
    _refused(result, "services_ready")
    assert "rune not ready" in result.message


def test_catch_up_lag_refuses_without_a_follower_and_with_high_lag(pg_url: str, tmp_path):
    upgrade(pg_url)
    probe = FollowerLag(Settings(postgres_url=pg_url, home=tmp_path))
    gate = CatchUpLagGate(probe, threshold_s=1.0, samples=2, interval_s=0.05)
    result = gate.check()
    _refused(result, "catch_up_lag")
    assert "no catch-up follower" in result.message
    with psycopg.connect(pg_url, autocommit=True) as follower:
        # What a follower leaves behind: its lock, a position and a lag of 5 s just measured.
        follower.execute("SELECT pg_advisory_lock(%s)", (SYNC_LOCK,))
        for source in ("forums", "repo"):
            follower.execute(
                "INSERT INTO runeshift.source_positions (source, kind, position, recorded_by) "
                "VALUES (%s, 'binlog', '{}'::jsonb, 'sync')",
                (source,),
            )
            follower.execute(
                "INSERT INTO runeshift.sync_state (source, heartbeat_seq, heartbeat_lag_ms, "
                "heartbeat_applied_at) VALUES (%s, 1, %s, now())",
                (source, 5000.0 if source == "repo" else 10.0),
            )
        result = gate.check()
        _refused(result, "catch_up_lag")
        assert "lag 5.000 s on repo" in result.message
        follower.execute(
            "UPDATE runeshift.sync_state SET heartbeat_lag_ms = 100, heartbeat_applied_at = now()"
        )
        assert gate.check().ok


def test_reconcile_clean():
    failing = ReconcileCleanGate(lambda: ReconcileOutcome(False, "reconcile failed: missing 3"))
    result = failing.check()
    _refused(result, "reconcile_clean")
    assert "missing 3" in result.message
    assert ReconcileCleanGate(lambda: ReconcileOutcome(True, "clean")).check().ok


def _json_server(answers: dict[str, object]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return None

        def do_GET(self):
            body = json.dumps(answers.get(self.path, {"error": "nope"})).encode()
            self.send_response(200 if self.path in answers else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_read_sample_refuses_reads_that_differ():
    legacy = _json_server({"/accounts/1": {"name": "Ann"}, "/accounts/2": {"name": "Bo"}})
    rune = _json_server({"/accounts/1": {"name": "Ann"}, "/accounts/2": {"name": "B0"}})
    try:
        urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in (legacy, rune)]
        gate = ReadSampleGate(*urls, lambda: ["/accounts/1", "/accounts/2"], settle_s=0.01)
        result = gate.check()
        _refused(result, "read_sample")
        assert "1 of 2 reads differ, e.g. /accounts/2" in result.message
        same = ReadSampleGate(*urls, lambda: ["/accounts/1"], settle_s=0.01)
        assert same.check().ok
    finally:
        for server in (legacy, rune):
            server.shutdown()
            server.server_close()


def test_write_pause_budget_refuses_a_predicted_pause_over_budget():
    inputs = PauseInputs(
        lag_s=0.8,
        change_rate_per_s=100,
        window_rows=50,
        verify_s=0.05,
        pre_verify_s=0.3,
        control_rtt_s=0.01,
    )
    prediction = predict_pause(inputs)
    result = WritePauseBudgetGate(lambda: prediction, budget_s=0.5).check()
    _refused(result, "write_pause_budget")
    assert "exceeds the budget 0.50 s" in result.message
    assert WritePauseBudgetGate(lambda: prediction, budget_s=5.0).check().ok


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        pytest.param(PauseInputs(0.0, 0.0, 0, 0.0, 0.0, 0.0), 0.05 + 0.05 + 0.02, id="idle"),
        pytest.param(PauseInputs(0.5, 0.0, 0, 0.0, 0.0, 0.0), 0.62, id="lag-adds-one-for-one"),
        pytest.param(
            PauseInputs(0.0, 100.0, 10, 0.01, 0.88, 0.0), 0.12 + 0.01 + 0.001 * 90, id="rows"
        ),
        pytest.param(PauseInputs(0.0, 0.0, 0, 0.0, 0.0, 0.01), 0.12 + 0.02 + 0.01 + 0.06, id="rtt"),
    ],
)
def test_pause_prediction_table(inputs: PauseInputs, expected: float):
    assert predict_pause(inputs).total_s == pytest.approx(expected, abs=1e-9)
