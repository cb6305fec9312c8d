"""The control store's quarantine: what a writer records is what an on-call reads back."""

from __future__ import annotations

import psycopg

from load.target_schema import upgrade
from runeshift import control_store
from transform.mapping_engine import QuarantinedRow

WHERE = {"source": "repo", "source_table": "licenses", "target_table": "rune.licenses"}


def _quarantine(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT source_key, rule, reason, raw_row, resolved_at IS NULL FROM runeshift.quarantine"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_quarantined_rows_are_recorded_in_one_statement_and_a_repeat_updates_them(pg_url):
    upgrade(pg_url)
    odd = {"note": 'tab\there, quote " and backslash \\', "n": 1, "none": None, "é": ["x"]}
    with psycopg.connect(pg_url) as conn:
        first = [
            QuarantinedRow("1", "orphan", "orphan: no account 9", {"id": 1}),
            QuarantinedRow("2", "php_unserialize", "truncated blob", odd),
            QuarantinedRow("1", "orphan", "orphan: no account 10", {"id": 1, "member_id": 10}),
        ]
        assert control_store.quarantine_rows(conn, first, run_id=None, **WHERE) == 3
        conn.commit()
        got = _quarantine(conn)
        # a key listed twice keeps its last entry, as row-by-row upserts would
        assert got == {
            "1": ("orphan", "orphan: no account 10", {"id": 1, "member_id": 10}, True),
            "2": ("php_unserialize", "truncated blob", odd, True),
        }
        control_store.resolve_quarantine(conn, keys=["2"], **WHERE)
        again = [QuarantinedRow("2", "rejected_by_target", "price below zero", {"id": 2})]
        assert control_store.quarantine_rows(conn, again, run_id=None, **WHERE) == 1
        assert control_store.quarantine_rows(conn, [], run_id=None, **WHERE) == 0
        conn.commit()
        got = _quarantine(conn)
        # seen again: the new reason, and no longer resolved
        assert got["2"] == ("rejected_by_target", "price below zero", {"id": 2}, True)
        assert len(got) == 2
