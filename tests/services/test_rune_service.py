"""The Rune service answers the API from a backfilled ``rune`` schema on the sandbox Postgres.

The module builds one small legacy world (its own MariaDB databases) and backfills it into
its own Postgres database; the service runs on loopback with real HTTP.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from runeshift.connections import mysql_connect
from runeshift.settings import Settings
from services.rune_service.http_api import ServiceServer
from services.rune_service.rune_store import RuneStore
from tests.conftest import backfilled_world
from tests.services.service_http import call
from transform.identity_keys import uuid_for

FORUMS, REPO = "rs_forums", "rs_repo"


@pytest.fixture(scope="module")
def world(mysql_url: str, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    with backfilled_world(
        mysql_url, pg_server_url, home, forums_db=FORUMS, repo_db=REPO, seed=11
    ) as settings:
        yield settings


@pytest.fixture
def rune(world: Settings):
    server = ServiceServer(RuneStore(world.postgres_url), fence_budget_s=5.0).start()
    yield server
    server.shutdown()


def _member_and_script(settings: Settings) -> tuple[int, int]:
    with psycopg.connect(settings.postgres_url) as conn:
        row = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.accounts a, rune.scripts s "
            "WHERE NOT EXISTS (SELECT 1 FROM rune.licenses l WHERE l.account_id = a.id "
            "AND l.script_id = s.id) ORDER BY a.legacy_member_id, s.legacy_script_id "
            "OFFSET (random() * 500)::int LIMIT 1"
        ).fetchone()
    return int(row[0]), int(row[1])


def test_ready_and_served_by(rune):
    status, body, headers = call("GET", rune.url + "/ready")
    assert status == 200 and body == {"ready": True, "service": "rune"}
    assert headers["x-served-by"] == "rune"


def test_account_lookup_shows_the_migrated_member(rune, world: Settings):
    conn = mysql_connect(world.forums_url)
    with conn.cursor() as cur:
        cur.execute("SELECT member_id, CAST(name AS BINARY) FROM core_members ORDER BY member_id")
        members = list(cur.fetchall())
    conn.close()
    member_id, raw = next((m, n) for m, n in members if not n.isascii() and _utf8(n))
    status, body, _ = call("GET", f"{rune.url}/accounts/{member_id}")
    assert status == 200
    assert body["member_id"] == member_id
    assert body["display_name"] == raw.decode("utf-8")
    assert call("GET", f"{rune.url}/accounts/999999")[0] == 404
    assert call("GET", f"{rune.url}/accounts/abc")[0] == 400


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_catalog_pages_by_legacy_id(rune, world: Settings):
    with psycopg.connect(world.postgres_url) as conn:
        expected = [
            r[0]
            for r in conn.execute(
                "SELECT legacy_script_id FROM rune.scripts ORDER BY legacy_script_id"
            ).fetchall()
        ]
    seen: list[int] = []
    after = None
    while True:
        query = "?limit=7" + (f"&after={after}" if after else "")
        status, page, _ = call("GET", f"{rune.url}/scripts{query}")
        assert status == 200
        seen += [s["script_id"] for s in page["scripts"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == expected


def test_license_check_matches_the_target(rune, world: Settings):
    with psycopg.connect(world.postgres_url) as conn:
        active = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.licenses l "
            "JOIN rune.accounts a ON a.id = l.account_id JOIN rune.scripts s ON s.id = l.script_id "
            "WHERE NOT refunded AND expires_at IS NULL AND starts_at < now() LIMIT 1"
        ).fetchone()
    status, body, _ = call(
        "GET", f"{rune.url}/licenses/check?member_id={active[0]}&script_id={active[1]}"
    )
    assert status == 200 and body["active"] is True and body["expires_at"] is None
    member, script = _member_and_script(world)
    status, body, _ = call(
        "GET", f"{rune.url}/licenses/check?member_id={member}&script_id={script}"
    )
    assert status == 200 and body["active"] is False


def test_order_creates_order_item_and_license_once(rune, world: Settings):
    member, script = _member_and_script(world)
    rid = f"test-order-{uuid.uuid4().hex}"
    order = {
        "member_id": member,
        "script_id": script,
        "kind": "monthly",
        "price": "9.99",
        "currency": "USD",
        "request_id": rid,
    }
    status, first, headers = call("POST", rune.url + "/orders", order)
    assert status == 201, first
    assert headers["x-served-by"] == "rune"
    assert first["license_id"] == str(uuid_for("rune_license", rid))
    assert first["order_id"] == str(uuid_for("rune_order", rid))
    status, again, _ = call("POST", rune.url + "/orders", order)
    assert status == 200 and again == {**first, "replayed": True}
    assert call("POST", rune.url + "/orders", {**order, "price": "1.00"})[0] == 409
    with psycopg.connect(world.postgres_url) as conn:
        rows = conn.execute(
            "SELECT l.kind, l.price_paid_minor, l.price_currency, o.total_minor, i.quantity, "
            "l.expires_at - l.starts_at FROM rune.licenses l JOIN rune.order_items i ON i.id = l.order_item_id "
            "JOIN rune.orders o ON o.id = i.order_id WHERE l.id = %s",
            (first["license_id"],),
        ).fetchall()
    assert len(rows) == 1
    kind, paid, currency, total, quantity, term = rows[0]
    assert (kind, paid, currency, total, quantity) == ("monthly", 999, "USD", 999, 1)
    assert term.days == 30
    status, check, _ = call(
        "GET", f"{rune.url}/licenses/check?member_id={member}&script_id={script}"
    )
    assert check["active"] is True and check["kind"] == "monthly"
    status, written, _ = call("GET", f"{rune.url}/writes/{rid}")
    assert status == 200
    assert written["applied"] and written["applied_by"] == "rune" and written["in_rune"] is True


def test_grant_and_bad_requests(rune, world: Settings):
    member, script = _member_and_script(world)
    rid = f"test-grant-{uuid.uuid4().hex}"
    grant = {"member_id": member, "script_id": script, "kind": "lifetime", "request_id": rid}
    status, body, _ = call("POST", rune.url + "/licenses", grant)
    assert status == 201 and body["kind"] == "license" and body["order_id"] is None
    status, check, _ = call(
        "GET", f"{rune.url}/licenses/check?member_id={member}&script_id={script}"
    )
    assert check == {
        "member_id": member,
        "script_id": script,
        "active": True,
        "kind": "lifetime",
        "expires_at": None,
    }
    assert (
        call(
            "POST", rune.url + "/licenses", {**grant, "request_id": "x" + rid, "member_id": 999999}
        )[0]
        == 404
    )
    assert call("POST", rune.url + "/licenses", {**grant, "kind": "forever"})[0] == 400
    assert call("POST", rune.url + "/licenses", {**grant, "request_id": "bad id!"})[0] == 400
    assert call("POST", rune.url + "/orders", {**grant, "price": "-1"})[0] == 400
    assert call("GET", f"{rune.url}/writes/never-{rid}")[0] == 404


def test_fence_holds_writes_without_failing_them_then_opens(rune, world: Settings):
    member, script = _member_and_script(world)
    status, fence, _ = call(
        "POST", rune.admin_url + "/admin/fence", {"writes": "hold", "drain_timeout": 5}
    )
    assert status == 200 and fence["writes"] == "hold" and fence["drained"] is True
    results: list[tuple[int, dict, dict]] = []
    rid = f"test-held-{uuid.uuid4().hex}"
    grant = {"member_id": member, "script_id": script, "kind": "trial", "request_id": rid}
    worker = threading.Thread(
        target=lambda: results.append(call("POST", rune.url + "/licenses", grant))
    )
    worker.start()
    deadline = time.monotonic() + 5
    while call("GET", rune.admin_url + "/admin/fence")[1]["held"] != 1:
        assert time.monotonic() < deadline, "the write was not held"
        time.sleep(0.05)
    # Reads are not held, and the service stays ready while writes wait.
    assert call("GET", rune.url + "/ready")[0] == 200
    assert call("GET", f"{rune.url}/writes/{rid}")[0] == 404
    assert not results
    status, fence, _ = call("POST", rune.admin_url + "/admin/fence", {"writes": "open"})
    worker.join(10)
    assert results and results[0][0] == 201, results
    fence = call("GET", rune.admin_url + "/admin/fence")[1]
    assert fence["held"] == 0 and fence["held_total"] >= 1 and fence["in_flight"] == 0
    assert call("GET", f"{rune.url}/writes/{rid}")[1]["in_rune"] is True


def test_a_held_write_past_the_budget_is_refused_not_applied(rune, world: Settings):
    member, script = _member_and_script(world)
    call("POST", rune.admin_url + "/admin/fence", {"writes": "hold", "budget_s": 0.5})
    rid = f"test-expired-{uuid.uuid4().hex}"
    started = time.monotonic()
    status, body, headers = call(
        "POST",
        rune.url + "/licenses",
        {"member_id": member, "script_id": script, "kind": "trial", "request_id": rid},
    )
    assert status == 503 and "budget" in body["error"] and headers["retry-after"] == "1"
    assert 0.4 < time.monotonic() - started < 5
    call("POST", rune.admin_url + "/admin/fence", {"writes": "open"})
    assert call("GET", f"{rune.url}/writes/{rid}")[0] == 404
    assert call("GET", rune.admin_url + "/admin/fence")[1]["expired_total"] == 1


def test_reads_drain_makes_ready_fail_but_reads_still_answer(rune):
    call("POST", rune.admin_url + "/admin/fence", {"reads": "drain"})
    assert call("GET", rune.url + "/ready")[0] == 503
    assert call("GET", rune.url + "/scripts?limit=1")[0] == 200
    call("POST", rune.admin_url + "/admin/fence", {"reads": "open"})
    assert call("GET", rune.url + "/ready")[0] == 200
    assert call("POST", rune.admin_url + "/admin/fence", {"writes": "forward"})[0] == 400
    stats = call("GET", rune.admin_url + "/admin/stats")[1]
    assert stats["service"] == "rune" and stats["by_route"]["GET /ready"] == 2


def test_writes_go_on_when_the_legacy_ledger_is_unreachable(world: Settings):
    from runeshift.sandbox.server_process import free_port
    from services.legacy_service.standin_ledger import StandinLedger

    ledger = StandinLedger(f"mysql://nobody:x@127.0.0.1:{free_port()}/gone_standin")
    server = ServiceServer(RuneStore(world.postgres_url, legacy_ledger=ledger.find)).start()
    try:
        member, script = _member_and_script(world)
        rid = f"test-no-legacy-{uuid.uuid4().hex}"
        body = {"member_id": member, "script_id": script, "kind": "trial", "request_id": rid}
        status, result, _ = call("POST", server.url + "/licenses", body)
        assert status == 201 and result["applied_by"] == "rune"
    finally:
        server.shutdown()
        ledger.close()
