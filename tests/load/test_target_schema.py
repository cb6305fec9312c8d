"""The rune and runeshift schemas: Alembic round trip, key constraints, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from load import target_schema
from runeshift.connections import pg_connect
from runeshift.errors import ConfigError

RUNE_TABLES = {
    "roles",
    "accounts",
    "scripts",
    "script_versions",
    "compile_jobs",
    "licenses",
    "instance_allowances",
    "reviews",
    "products",
    "prices",
    "orders",
    "order_items",
    "payments",
    "refunds",
}
CONTROL_TABLES = {
    "alembic_version",
    "runs",
    "backfill_chunks",
    "source_positions",
    "quarantine",
    "exclusions",
    "dedup_decisions",
    "cutover_journal",
    "cutover_state",
}


def _tables(pg_url: str, schema: str) -> set[str]:
    with pg_connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {name for (name,) in rows}


def _schemas(pg_url: str) -> set[str]:
    with pg_connect(pg_url) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    return {name for (name,) in rows}


@pytest.fixture
def rune_url(pg_url: str) -> str:
    """A fresh database upgraded to head."""
    target_schema.upgrade(pg_url)
    return pg_url


HEAD = target_schema.head_revision()


def test_revisions_form_one_chain_ending_at_head():
    import re
    from pathlib import Path

    versions = Path(target_schema.__file__).parent / "migrations" / "versions"
    down: dict[str, str | None] = {}
    for path in versions.glob("*.py"):
        text = path.read_text()
        rev = re.search(r'^revision\b.*=\s*"([^"]+)"', text, re.M)
        parent = re.search(r'^down_revision\b.*=\s*(None|"[^"]+")', text, re.M)
        if rev and parent:
            down[rev.group(1)] = None if parent.group(1) == "None" else parent.group(1).strip('"')
    chain, at = [], HEAD
    while at is not None:
        chain.append(at)
        at = down[at]
    assert sorted(chain) == sorted(down), "every revision is on the single chain to head"
    assert chain[-1] == "0001_control" and "0002_rune_core" in chain


def test_fresh_database_has_no_revision(pg_url):
    assert target_schema.current(pg_url) is None
    assert not target_schema.status(pg_url).at_head
    assert "runeshift" not in _schemas(pg_url), "reading the revision must not create anything"


def test_upgrade_to_head_creates_both_schemas(pg_url):
    change = target_schema.upgrade(pg_url)
    assert (change.before, change.after, change.changed) == (None, HEAD, True)
    assert target_schema.current(pg_url) == target_schema.head_revision()
    assert _tables(pg_url, "rune") == RUNE_TABLES
    # Later revisions add control tables (sync state, ...); 0001's are all there.
    assert _tables(pg_url, "runeshift") >= CONTROL_TABLES
    again = target_schema.upgrade(pg_url)
    assert not again.changed


def test_round_trip_down_to_base_and_up_again(pg_url):
    target_schema.upgrade(pg_url)
    step = target_schema.downgrade(pg_url, "0001_control")
    assert step.after == "0001_control"
    assert "rune" not in _schemas(pg_url)
    assert _tables(pg_url, "runeshift") == CONTROL_TABLES

    target_schema.downgrade(pg_url, "base")
    assert target_schema.current(pg_url) is None
    assert _tables(pg_url, "runeshift") == {"alembic_version"}

    target_schema.upgrade(pg_url, "0001_control")
    assert target_schema.current(pg_url) == "0001_control"
    target_schema.upgrade(pg_url)
    assert target_schema.current(pg_url) == HEAD
    assert _tables(pg_url, "rune") == RUNE_TABLES


@pytest.mark.parametrize("revision", ["9999_nope", "not-a-revision"], ids=["unknown", "garbage"])
def test_unknown_revision_is_a_config_error(pg_url, revision):
    with pytest.raises(ConfigError, match=revision):
        target_schema.upgrade(pg_url, revision)
    assert target_schema.current(pg_url) is None


def test_downgrade_above_current_is_a_config_error(pg_url):
    target_schema.upgrade(pg_url, "0001_control")
    with pytest.raises(ConfigError):
        target_schema.downgrade(pg_url, "0002_rune_core")
    assert target_schema.current(pg_url) == "0001_control"


# --- constraints -------------------------------------------------------------------------


def _account(conn: psycopg.Connection, **values: object) -> uuid.UUID:
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "display_name": "Zezima",
        "ban_state": "none",
        "post_count": 0,
        "accepts_admin_email": True,
    }
    row.update(values)
    columns = ", ".join(row)
    params = ", ".join(f"%({name})s" for name in row)
    conn.execute(f"INSERT INTO rune.accounts ({columns}) VALUES ({params})", row)
    return row["id"]  # type: ignore[return-value]


def _script(conn: psycopg.Connection, slug: str = "auto-fighter") -> uuid.UUID:
    script_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO rune.scripts (id, name, slug, status, is_premium, total_users)"
        " VALUES (%s, 'Auto Fighter', %s, 'approved', false, 0)",
        (script_id, slug),
    )
    return script_id


def _order(conn: psycopg.Connection, **money: int) -> uuid.UUID:
    order_id = uuid.uuid4()
    row = {"subtotal_minor": 1999, "total_minor": 1999, **money}
    conn.execute(
        "INSERT INTO rune.orders (id, name, currency, presentment_currency, subtotal_minor,"
        " total_minor, placed_at, updated_at)"
        " VALUES (%(id)s, '#1001', 'USD', 'EUR', %(subtotal_minor)s, %(total_minor)s,"
        " now(), now())",
        {"id": order_id, **row},
    )
    return order_id


def test_login_emails_are_unique_case_insensitively(rune_url):
    # Stored emails are normalised, so a case variant can only arrive through a direct insert;
    # the unique index on lower(email) is what stands behind the normalising CHECK.
    with pg_connect(rune_url) as conn:
        _account(conn, email="zezima@example.com")
        conn.execute("ALTER TABLE rune.accounts DROP CONSTRAINT ck_accounts_email_normalised")
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_accounts_login_email"):
            _account(conn, email="Zezima@Example.com")


def test_login_email_tie_loser_is_kept_when_it_cannot_log_in(rune_url):
    with pg_connect(rune_url) as conn:
        _account(conn, email="zezima@example.com")
        _account(conn, email="zezima@example.com", can_login=False)
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_accounts_login_email"):
            _account(conn, email="zezima@example.com")
        conn.rollback()
    with pg_connect(rune_url) as conn:
        _account(conn, email="zezima@example.com")
        _account(conn, email="zezima@example.com", can_login=False)
        _account(conn, email="zezima@example.com", can_login=False)
        conn.commit()
        (count,) = conn.execute("SELECT count(*) FROM rune.accounts").fetchone()
    assert count == 3


@pytest.mark.parametrize(
    "values, constraint",
    [
        ({"email": "Zezima@example.com"}, "ck_accounts_email_normalised"),
        ({"email": " zezima@example.com"}, "ck_accounts_email_normalised"),
        ({"email": ""}, "ck_accounts_email_normalised"),
        ({"ban_state": "temporary"}, "ck_accounts_banned_until"),
        (
            {"ban_state": "permanent", "banned_until": "2030-01-01T00:00:00Z"},
            "ck_accounts_banned_until",
        ),
        ({"ban_state": "banned"}, "ck_accounts_ban_state"),
        ({"post_count": -1}, "ck_accounts_post_count"),
        ({"birthday_month": 13}, "ck_accounts_birthday_month"),
        ({"birthday_day": 0}, "ck_accounts_birthday_day"),
        ({"profile": json.dumps(["not", "an", "object"])}, "ck_accounts_profile_object"),
    ],
    ids=[
        "email-mixed-case",
        "email-untrimmed",
        "email-blank",
        "temporary-ban-without-until",
        "permanent-ban-with-until",
        "unknown-ban-state",
        "negative-post-count",
        "month-13",
        "day-0",
        "profile-not-object",
    ],
)
def test_account_checks_reject(rune_url, values, constraint):
    with (
        pg_connect(rune_url) as conn,
        pytest.raises(psycopg.errors.CheckViolation, match=constraint),
    ):
        _account(conn, **values)


def test_account_accepts_a_temporary_ban_with_an_end(rune_url):
    with pg_connect(rune_url) as conn:
        _account(conn, ban_state="temporary", banned_until="2030-01-01T00:00:00Z")


def test_script_slugs_are_unique_case_insensitively(rune_url):
    with pg_connect(rune_url) as conn:
        _script(conn, "Auto-Fighter")
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_scripts_slug_ci"):
            _script(conn, "auto-fighter")


@pytest.mark.parametrize(
    "rating, ok",
    [(0, False), (1, True), (5, True), (6, False)],
    ids=["rating-0", "rating-1", "rating-5", "rating-6"],
)
def test_review_rating_is_1_to_5(rune_url, rating, ok):
    with pg_connect(rune_url) as conn:
        account_id, script_id = _account(conn), _script(conn)
        insert = "INSERT INTO rune.reviews (script_id, account_id, rating) VALUES (%s, %s, %s)"
        if ok:
            conn.execute(insert, (script_id, account_id, rating))
        else:
            with pytest.raises(psycopg.errors.CheckViolation, match="ck_reviews_rating"):
                conn.execute(insert, (script_id, account_id, rating))


def test_one_review_per_account_and_script(rune_url):
    with pg_connect(rune_url) as conn:
        account_id, script_id = _account(conn), _script(conn)
        insert = "INSERT INTO rune.reviews (script_id, account_id, rating) VALUES (%s, %s, 4)"
        conn.execute(insert, (script_id, account_id))
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_reviews_script_id_account_id"):
            conn.execute(insert, (script_id, account_id))


@pytest.mark.parametrize(
    "money", [{"total_minor": -1}, {"subtotal_minor": -500}], ids=["total", "subtotal"]
)
def test_negative_order_amounts_are_rejected(rune_url, money):
    with pg_connect(rune_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        _order(conn, **money)


def test_negative_payment_amount_is_rejected(rune_url):
    with pg_connect(rune_url) as conn:
        order_id = _order(conn)
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_payments_amount_minor"):
            conn.execute(
                "INSERT INTO rune.payments (order_id, kind, status, amount_minor, currency,"
                " processed_at) VALUES (%s, 'sale', 'success', -1999, 'USD', now())",
                (order_id,),
            )


@pytest.mark.parametrize("currency", ["usd", "US", "U$D"], ids=["lower", "short", "symbol"])
def test_currency_codes_are_three_capitals(rune_url, currency):
    with pg_connect(rune_url) as conn:
        product_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO rune.products (id, kind, title, handle, status)"
            " VALUES (%s, 'instances', '4 instances', 'instances-4', 'active')",
            (product_id,),
        )
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_prices_currency"):
            conn.execute(
                "INSERT INTO rune.prices (product_id, title, amount_minor, currency)"
                " VALUES (%s, 'Monthly', 999, %s)",
                (product_id, currency),
            )


def test_negative_instance_slots_are_valid_staff_corrections(rune_url):
    with pg_connect(rune_url) as conn:
        account_id = _account(conn)
        conn.execute(
            "INSERT INTO rune.instance_allowances"
            " (account_id, slots, starts_at, expires_at, source)"
            " VALUES (%s, -2, now(), now() + interval '30 days', 'staff')",
            (account_id,),
        )


def test_license_needs_an_existing_account(rune_url):
    with pg_connect(rune_url) as conn:
        script_id = _script(conn)
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="fk_licenses_account_id"):
            conn.execute(
                "INSERT INTO rune.licenses (account_id, script_id, kind, starts_at)"
                " VALUES (%s, %s, 'lifetime', now())",
                (uuid.uuid4(), script_id),
            )


def test_deleting_an_author_keeps_the_script(rune_url):
    with pg_connect(rune_url) as conn:
        author_id = _account(conn)
        script_id = _script(conn)
        conn.execute("UPDATE rune.scripts SET author_account_id = %s", (author_id,))
        conn.execute("DELETE FROM rune.accounts WHERE id = %s", (author_id,))
        (author,) = conn.execute(
            "SELECT author_account_id FROM rune.scripts WHERE id = %s", (script_id,)
        ).fetchone()
    assert author is None


def test_quarantine_keeps_one_row_per_source_row_and_target(rune_url):
    insert = (
        "INSERT INTO runeshift.quarantine (source, source_table, source_key, target_table, rule,"
        " reason, raw_row) VALUES ('tribot_repo', 'script_reviews', '17', 'reviews',"
        " 'rating_range', 'rating 6 is outside 1..5', '{\"rating\": 6}')"
    )
    with pg_connect(rune_url) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation, match="uq_quarantine_source_row"):
            conn.execute(insert)


def test_runs_get_an_id_and_defaults(rune_url):
    with pg_connect(rune_url) as conn:
        row = conn.execute(
            "INSERT INTO runeshift.runs (command, tool_version) VALUES ('backfill', '0.1.0')"
            " RETURNING id, status, args"
        ).fetchone()
    assert isinstance(row[0], uuid.UUID)
    assert row[1:] == ("running", {})


# --- CLI ---------------------------------------------------------------------------------


def _cli(pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "schema", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "RUNESHIFT_POSTGRES_URL": pg_url},
    )


def test_cli_current_fails_before_upgrade_and_passes_after(pg_url):
    before = _cli(pg_url, "current", "--json")
    assert before.returncode == 1, before.stderr
    assert json.loads(before.stdout) == {
        "current": None,
        "head": HEAD,
        "at_head": False,
    }

    upgraded = _cli(pg_url, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert HEAD in upgraded.stdout

    after = _cli(pg_url, "current", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["at_head"] is True


def test_cli_downgrade_needs_a_target_and_steps_back(pg_url):
    assert _cli(pg_url, "upgrade").returncode == 0
    missing = _cli(pg_url, "downgrade")
    assert missing.returncode == 2
    assert "--to" in missing.stderr

    down = _cli(pg_url, "downgrade", "--to", "0001_control", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["after"] == "0001_control"
    assert _cli(pg_url, "current").returncode == 1


def test_cli_unknown_revision_is_a_one_line_error(pg_url):
    proc = _cli(pg_url, "upgrade", "--to", "9999_nope")
    assert proc.returncode == 2
    assert "9999_nope" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_concurrent_upgrades_in_threads_both_end_at_head(pg_url):
    with ThreadPoolExecutor(max_workers=2) as pool:
        changes = list(pool.map(lambda _: target_schema.upgrade(pg_url), range(2)))
    assert sorted(change.changed for change in changes) == [False, True]
    assert target_schema.current(pg_url) == HEAD


def test_concurrent_upgrades_in_processes_both_end_at_head(pg_url):
    # Without env.py's advisory lock the slower run fails on "schema/relation already exists".
    code = "import sys; from load import target_schema; target_schema.upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    assert target_schema.current(pg_url) == HEAD


def test_database_from_a_newer_runeshift_is_refused(rune_url):
    with pg_connect(rune_url) as conn:
        conn.execute("UPDATE runeshift.alembic_version SET version_num = '0099_from_the_future'")
        conn.commit()
    state = target_schema.status(rune_url)
    assert (state.current, state.at_head) == ("0099_from_the_future", False)
    with pytest.raises(ConfigError, match="0099_from_the_future"):
        target_schema.upgrade(rune_url)
