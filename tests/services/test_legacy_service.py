"""The legacy stand-in answers the same API from the legacy MariaDB databases, writes legacy rows
(New York local DATETIMEs, zero dates), keeps its request ids in a side database, forwards
held writes to the Rune service, and its writes reach Rune through the catch-up.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from load.target_schema import upgrade
from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.settings import Settings
from runeshift.sync import SyncOptions, run_sync
from services.legacy_service.legacy_store import LegacyStore
from services.legacy_service.standin_ledger import StandinLedger
from services.rune_service.http_api import ServiceServer
from services.rune_service.rune_store import RuneStore
from tests.services.service_http import call
from transform.identity_keys import uuid_for

FORUMS, REPO, LEDGER = "ls_forums", "ls_repo", "ls_standin"
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def world(mysql_url: str, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory):
    generate_legacy_world(mysql_url, scale=0.1, seed=12, forums_db=FORUMS, repo_db=REPO)
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {LEDGER}")
    conn.close()
    name = f"ls_{uuid.uuid4().hex[:10]}"
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    target = pg_server_url.rsplit("/", 1)[0] + "/" + name
    upgrade(target)
    settings = Settings(
        forums_url=mysql_url + FORUMS,
        repo_url=mysql_url + REPO,
        postgres_url=target,
        staging=str(tmp_path_factory.mktemp("staging")),
    )
    run_backfill(settings)
    yield settings
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def legacy(world: Settings):
    store = LegacyStore(world.forums_url, world.repo_url, ledger_db=LEDGER)
    server = ServiceServer(store, fence_budget_s=10.0).start()
    yield server
    server.shutdown()


@pytest.fixture
def rune(world: Settings):
    ledger = StandinLedger(world.repo_url.rsplit("/", 1)[0] + "/" + LEDGER)
    server = ServiceServer(RuneStore(world.postgres_url, legacy_ledger=ledger.find)).start()
    yield server
    server.shutdown()
    ledger.close()


def _repo(world: Settings, sql: str, args: tuple = ()) -> list[tuple]:
    conn = mysql_connect(world.repo_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def _fresh_pair(world: Settings) -> tuple[int, int]:
    """A migrated member and script with no license between them yet."""
    with psycopg.connect(world.postgres_url) as conn:
        row = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.accounts a, rune.scripts s "
            "WHERE NOT EXISTS (SELECT 1 FROM rune.licenses l WHERE l.account_id = a.id "
            "AND l.script_id = s.id) ORDER BY random() LIMIT 1"
        ).fetchone()
    return int(row[0]), int(row[1])


def test_reads_agree_with_the_rune_service_on_the_backfilled_world(legacy, rune, world):
    assert call("GET", legacy.url + "/ready")[:2] == (200, {"ready": True, "service": "legacy"})
    with psycopg.connect(world.postgres_url) as conn:
        members = [
            r[0]
            for r in conn.execute(
                "SELECT legacy_member_id FROM rune.accounts WHERE can_login ORDER BY legacy_member_id LIMIT 40"
            ).fetchall()
        ]
        licensed = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.licenses l "
            "JOIN rune.accounts a ON a.id = l.account_id JOIN rune.scripts s ON s.id = l.script_id "
            "ORDER BY l.legacy_license_id LIMIT 40"
        ).fetchall()
    for member in members:
        status, from_legacy, headers = call("GET", f"{legacy.url}/accounts/{member}")
        assert status == 200 and headers["x-served-by"] == "legacy"
        assert from_legacy == call("GET", f"{rune.url}/accounts/{member}")[1], member
    for member, script in licensed:
        path = f"/licenses/check?member_id={member}&script_id={script}"
        assert call("GET", legacy.url + path)[1] == call("GET", rune.url + path)[1], path
    legacy_page = call("GET", legacy.url + "/scripts?limit=500")[1]["scripts"]
    rune_page = call("GET", rune.url + "/scripts?limit=500")[1]["scripts"]
    key = ("script_id", "name", "is_premium", "monthly_price_minor")
    migrated = {s["script_id"] for s in rune_page}  # a few legacy scripts are quarantined
    assert len(migrated) > len(legacy_page) / 2
    assert [tuple(s[k] for k in key) for s in legacy_page if s["script_id"] in migrated] == [
        tuple(s[k] for k in key) for s in rune_page
    ]


def test_an_order_writes_a_legacy_license_row_in_new_york_time_once(legacy, world):
    member, script = _fresh_pair(world)
    rid = f"lg-order-{uuid.uuid4().hex}"
    order = {
        "member_id": member,
        "script_id": script,
        "kind": "monthly",
        "price": "4.50",
        "currency": "USD",
        "request_id": rid,
    }
    before = datetime.now(NY).replace(tzinfo=None, microsecond=0)
    status, result, headers = call("POST", legacy.url + "/orders", order)
    after = datetime.now(NY).replace(tzinfo=None)
    assert status == 201, result
    assert headers["x-served-by"] == "legacy" and result["applied_by"] == "legacy"
    legacy_id = result["legacy_license_id"]
    assert result["license_id"] == str(uuid_for("license", legacy_id))
    [(kind, starts, expires, paid, refunded, created)] = _repo(
        world,
        "SELECT kind, starts_at, expires_at, price_paid, refunded, created_at FROM licenses WHERE id = %s",
        (legacy_id,),
    )
    assert (kind, str(paid), refunded) == ("monthly", "4.50", 0)
    assert before <= starts <= after and created == starts
    assert expires == starts + timedelta(days=30)
    # A retry answers the first result; a different body under the same id is refused.
    status, again, _ = call("POST", legacy.url + "/orders", order)
    assert status == 200 and again == {**result, "replayed": True}
    assert call("POST", legacy.url + "/orders", {**order, "kind": "lifetime"})[0] == 409
    assert _repo(
        world,
        "SELECT COUNT(*) FROM licenses WHERE member_id = %s AND script_id = %s",
        (member, script),
    ) == [(1,)]
    assert _repo(
        world,
        f"SELECT legacy_license_id FROM {LEDGER}.write_requests WHERE request_id = %s",
        (rid,),
    ) == [(legacy_id,)]
    status, written, _ = call("GET", f"{legacy.url}/writes/{rid}")
    assert status == 200 and written["applied_by"] == "legacy" and written["in_rune"] is None
    check = call("GET", f"{legacy.url}/licenses/check?member_id={member}&script_id={script}")[1]
    assert check["active"] is True and check["kind"] == "monthly"


def test_a_lifetime_grant_never_expires_the_legacy_way(legacy, world):
    member, script = _fresh_pair(world)
    rid = f"lg-grant-{uuid.uuid4().hex}"
    status, result, _ = call(
        "POST",
        legacy.url + "/licenses",
        {"member_id": member, "script_id": script, "kind": "lifetime", "request_id": rid},
    )
    assert status == 201
    [(expires, paid)] = _repo(
        world,
        "SELECT CAST(expires_at AS CHAR), price_paid FROM licenses WHERE id = %s",
        (result["legacy_license_id"],),
    )
    assert expires == "0000-00-00 00:00:00" and str(paid) == "0.00"
    check = call("GET", f"{legacy.url}/licenses/check?member_id={member}&script_id={script}")[1]
    assert check == {
        "member_id": member,
        "script_id": script,
        "active": True,
        "kind": "lifetime",
        "expires_at": None,
    }
    assert (
        call(
            "POST",
            legacy.url + "/licenses",
            {"member_id": 999999, "script_id": script, "kind": "trial", "request_id": "x" + rid},
        )[0]
        == 404
    )


def test_forward_delivers_held_writes_to_the_rune_service(legacy, rune, world):
    member, script = _fresh_pair(world)
    fence = call("POST", legacy.admin_url + "/admin/fence", {"writes": "hold", "drain_timeout": 5})[
        1
    ]
    assert fence["writes"] == "hold" and fence["drained"] is True
    rids = [f"lg-fwd-{i}-{uuid.uuid4().hex}" for i in range(3)]
    results: dict[str, tuple[int, dict, dict]] = {}

    def send(rid: str) -> None:
        results[rid] = call(
            "POST",
            legacy.url + "/licenses",
            {"member_id": member, "script_id": script, "kind": "trial", "request_id": rid},
        )

    workers = [threading.Thread(target=send, args=(rid,)) for rid in rids]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 5
    while call("GET", legacy.admin_url + "/admin/fence")[1]["held"] < len(rids):
        assert time.monotonic() < deadline, "writes were not held"
        time.sleep(0.05)
    assert not results
    call("POST", legacy.admin_url + "/admin/fence", {"writes": "forward", "forward_to": rune.url})
    for w in workers:
        w.join(10)
    for rid in rids:
        status, body, headers = results[rid]
        assert status == 201, body
        assert headers["x-served-by"] == "rune" and headers["x-forwarded-by"] == "legacy"
        assert body["applied_by"] == "rune" and body["license_id"] == str(
            uuid_for("rune_license", rid)
        )
        assert call("GET", f"{legacy.url}/writes/{rid}")[0] == 404  # nothing written on legacy
        assert call("GET", f"{rune.url}/writes/{rid}")[1]["in_rune"] is True
    fence = call("GET", legacy.admin_url + "/admin/fence")[1]
    assert (
        fence["forwarded_total"] == len(rids) and fence["held"] == 0 and fence["expired_total"] == 0
    )
    call("POST", legacy.admin_url + "/admin/fence", {"writes": "open"})


def test_a_retry_of_a_legacy_write_is_not_applied_again_anywhere(legacy, rune, world):
    member, script = _fresh_pair(world)
    rid = f"lg-retry-{uuid.uuid4().hex}"
    grant = {"member_id": member, "script_id": script, "kind": "staff", "request_id": rid}
    status, first, _ = call("POST", legacy.url + "/licenses", grant)
    assert status == 201
    # Forwarding: the stand-in answers a retry it already applied itself.
    call("POST", legacy.admin_url + "/admin/fence", {"writes": "forward", "forward_to": rune.url})
    status, again, headers = call("POST", legacy.url + "/licenses", grant)
    call("POST", legacy.admin_url + "/admin/fence", {"writes": "open"})
    assert status == 200 and headers["x-served-by"] == "legacy" and again["replayed"] is True
    # After the switch the retry reaches Rune, which finds it in the stand-in's ledger.
    status, at_rune, _ = call("POST", rune.url + "/licenses", grant)
    assert status == 200 and at_rune["applied_by"] == "legacy"
    assert at_rune["license_id"] == first["license_id"]
    with psycopg.connect(world.postgres_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM rune.licenses WHERE id = %s",
            (str(uuid_for("rune_license", rid)),),
        ).fetchone() == (0,)


def test_a_legacy_write_reaches_rune_through_the_catch_up(legacy, rune, world):
    member, script = _fresh_pair(world)
    rid = f"lg-sync-{uuid.uuid4().hex}"
    status, result, _ = call(
        "POST",
        legacy.url + "/orders",
        {
            "member_id": member,
            "script_id": script,
            "kind": "lifetime",
            "price": "12.00",
            "currency": "USD",
            "request_id": rid,
        },
    )
    assert status == 201
    status, written, _ = call("GET", f"{rune.url}/writes/{rid}")
    assert status == 200 and written["applied_by"] == "legacy" and written["in_rune"] is False
    run_sync(world, options=SyncOptions(until_caught_up=True, timeout_seconds=120))
    written = call("GET", f"{rune.url}/writes/{rid}")[1]
    assert written["in_rune"] is True and written["license_id"] == result["license_id"]
    check = call("GET", f"{rune.url}/licenses/check?member_id={member}&script_id={script}")[1]
    assert check["active"] is True and check["kind"] == "lifetime" and check["expires_at"] is None
