"""A legacy delete that would break a foreign key in Rune is quarantined; the stream goes on."""

from __future__ import annotations

import uuid

import psycopg

from reconcile.reconcile_run import ReconcileOptions, run_reconcile
from runeshift.connections import mysql_connect
from tests.runeshift.test_sync import backfilled, catch_up
from transform.identity_keys import uuid_for


def _order_for(target: str, account: str) -> None:
    with psycopg.connect(target) as pg:  # an order only Rune knows about (e.g. from Shopify)
        pg.execute(
            "INSERT INTO rune.orders (id, name, account_id, currency, presentment_currency, subtotal_minor, "
            "discount_minor, shipping_minor, tax_minor, total_minor, placed_at, updated_at) "
            "VALUES (%s, '#9001', %s, 'USD', 'USD', 500, 0, 0, 0, 500, now(), now())",
            (str(uuid.uuid4()), account),
        )


def test_member_with_a_store_order_is_kept_when_deleted_in_legacy(
    mysql_url, pg_server_url, tmp_path
):
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=11)
    conn = mysql_connect(world["forums_url"])
    with conn.cursor() as cur:
        cur.execute("SELECT member_id FROM core_members ORDER BY member_id LIMIT 2")
        (kept_member,), (deleted_member,) = cur.fetchall()
    account = str(uuid_for("account", kept_member))
    _order_for(target, account)
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM core_members WHERE member_id IN (%s, %s)", (kept_member, deleted_member)
        )
        cur.execute(
            "INSERT INTO core_members (name, email, joined) VALUES ('After The Delete', 'after@example.com', 1700000000)"
        )
        new_member = cur.lastrowid
    conn.close()

    catch_up(settings)

    with psycopg.connect(target) as pg:
        assert pg.execute(
            "SELECT count(*) FROM rune.accounts WHERE id = %s", (account,)
        ).fetchone() == (1,)
        gone = str(uuid_for("account", deleted_member))
        assert pg.execute(
            "SELECT count(*) FROM rune.accounts WHERE id = %s", (gone,)
        ).fetchone() == (0,)
        (rule, reason) = pg.execute(
            "SELECT rule, reason FROM runeshift.quarantine WHERE source_table = 'core_members' "
            "AND source_key = %s AND resolved_at IS NULL",
            (str(kept_member),),
        ).fetchone()
        assert rule == "delete_blocked" and "fk_orders_account_id" in reason
        # The change after the blocked delete flowed: the stream did not stall.
        assert pg.execute(
            "SELECT display_name FROM rune.accounts WHERE legacy_member_id = %s", (new_member,)
        ).fetchone() == ("After The Delete",)


def test_a_kept_account_gives_up_its_login_and_reconcile_accounts_for_it(
    mysql_url, pg_server_url, tmp_path
):
    """The kept account of a deleted member must not hold its email's login.

    Another member taking that email (any case) is then the only one who can log in with
    it; while the kept row held the login, that member's row was rejected by the unique
    index on every retry. Reconcile counts the kept row as accounted, not as extra.
    """
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=11)
    conn = mysql_connect(world["forums_url"])
    with conn.cursor() as cur:
        cur.execute(
            "SELECT member_id, email FROM core_members WHERE email LIKE '%%@%%' "
            "ORDER BY member_id LIMIT 2"
        )
        (deleted_member, email), (heir, _) = cur.fetchall()
    account = str(uuid_for("account", deleted_member))
    with psycopg.connect(target) as pg:
        assert pg.execute(
            "SELECT can_login FROM rune.accounts WHERE id = %s", (account,)
        ).fetchone() == (True,)
    _order_for(target, account)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM core_members WHERE member_id = %s", (deleted_member,))
        cur.execute(
            "UPDATE core_members SET email = %s WHERE member_id = %s", (email.upper(), heir)
        )
    conn.close()

    catch_up(settings)

    with psycopg.connect(target) as pg:
        logins = dict(
            pg.execute(
                "SELECT legacy_member_id, can_login FROM rune.accounts "
                "WHERE legacy_member_id IN (%s, %s)",
                (deleted_member, heir),
            ).fetchall()
        )
        assert logins == {deleted_member: False, heir: True}
        assert pg.execute(
            "SELECT count(*) FROM runeshift.quarantine WHERE resolved_at IS NULL "
            "AND rule = 'rejected_by_target'"
        ).fetchone() == (0,)
    report = run_reconcile(
        settings, ReconcileOptions(tables=("rune.accounts",), quality=False, settle_rounds=0)
    )
    (accounts,) = report.tables
    assert accounts.clean, [d.as_dict() for d in accounts.differences]
    assert accounts.kept_after_source_delete == 1
