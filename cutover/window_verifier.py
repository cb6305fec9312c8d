"""Verifies the rows legacy changed since a mark, before writes open on Rune.

The full reconciliation (the ``verified`` stage) proves the two sides agreed up to its
snapshot. The rows legacy wrote after that are the ones the write switch must still prove:
every write the legacy stand-in acknowledged is in its ledger (``<ledger db>.write_requests``,
committed with the ``licenses`` row), so the window is "ledger rows applied since the
mark". Each such license is compared with ``rune.licenses`` by its deterministic id
(``uuid5('license', legacy id)``): the row must exist with the same member, script and kind.
The mark is MariaDB's own ``NOW(6)`` so the window is measured on one clock.

This checks the writes made through the service; changes made to legacy by other means
are the reconciliation's job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from cutover.warm_connections import MySQLConnections
from runeshift.connections import parse_mysql_url, pg_connect
from transform.identity_keys import uuid_for

MAX_REPORTED = 20


@dataclass(frozen=True)
class WindowResult:
    """What the window held and what did not match."""

    since: str
    rows: int
    mismatched: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.mismatched

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "rows": self.rows,
            "mismatched": self.mismatched[:MAX_REPORTED],
            "mismatched_count": len(self.mismatched),
            "seconds": round(self.seconds, 4),
        }


class WindowVerifier(Protocol):
    def mark(self) -> str: ...

    def safe_mark(self) -> str: ...

    def verify(self, since: str, until: str | None = None) -> WindowResult: ...


class LedgerWindowVerifier:
    """Window = the stand-in's ledger rows since the mark; see the module note."""

    def __init__(
        self,
        repo_url: str,
        postgres_url: str,
        ledger_db: str,
        *,
        connections: MySQLConnections | None = None,
    ) -> None:
        self._repo_url = repo_url
        self._conns = connections or MySQLConnections()
        self._postgres_url = postgres_url
        self._ledger_db = ledger_db
        self._repo_db = parse_mysql_url(repo_url).database

    def mark(self) -> str:
        with self._conns.connection(self._repo_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT DATE_FORMAT(NOW(6), '%Y-%m-%d %H:%i:%s.%f')")
            row = cur.fetchone()
        assert row is not None
        return str(row[0])

    def safe_mark(self) -> str:
        """A mark before which every ledger row is committed (visible) now.

        A write still running may have inserted its ledger row (``applied_at``) before NOW
        without committing; it would be invisible to a verification now and skipped by a
        later one starting at NOW. Its transaction is in ``innodb_trx`` and started no later
        than its insert, so the oldest running transaction's start (whole seconds, rounded
        down: earlier is safe) bounds every such row.
        """
        with self._conns.connection(self._repo_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT DATE_FORMAT(LEAST(NOW(6), COALESCE(MIN(trx_started), NOW(6))), "
                "'%Y-%m-%d %H:%i:%s.%f') FROM information_schema.innodb_trx"
            )
            row = cur.fetchone()
        assert row is not None
        return str(row[0])

    def verify(self, since: str, until: str | None = None) -> WindowResult:
        """Compare the ledger rows applied in ``[since, until)`` (``until`` open: no bound)."""
        started = time.monotonic()
        with self._conns.connection(self._repo_url) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT w.request_id, l.id, l.member_id, l.script_id, l.kind "
                f"FROM `{self._ledger_db}`.write_requests w "
                f"LEFT JOIN `{self._repo_db}`.licenses l ON l.id = w.legacy_license_id "
                f"WHERE w.applied_at >= %s AND w.applied_at < COALESCE(%s, '9999-12-31')",
                (since, until),
            )
            legacy = list(cur.fetchall())
        mismatched: list[str] = []
        wanted: dict[str, tuple[str, int, int, str]] = {}
        for request_id, license_id, member_id, script_id, kind in legacy:
            if license_id is None:
                mismatched.append(f"{request_id}: acknowledged by legacy but no licenses row")
                continue
            wanted[str(uuid_for("license", int(license_id)))] = (
                str(request_id),
                int(member_id),
                int(script_id),
                str(kind),
            )
        if wanted:
            with pg_connect(self._postgres_url, autocommit=True) as pg:
                rows = pg.execute(
                    "SELECT l.id::text, a.legacy_member_id, s.legacy_script_id, l.kind "
                    "FROM rune.licenses l LEFT JOIN rune.accounts a ON a.id = l.account_id "
                    "LEFT JOIN rune.scripts s ON s.id = l.script_id WHERE l.id = ANY(%s::uuid[])",
                    (list(wanted),),
                ).fetchall()
            found = {str(r[0]): (r[1], r[2], str(r[3])) for r in rows}
            for license_id, (request_id, member, script, kind) in wanted.items():
                got = found.get(license_id)
                if got is None:
                    mismatched.append(f"{request_id}: license {license_id} not in rune.licenses")
                elif (got[0], got[1], got[2]) != (member, script, kind):
                    mismatched.append(
                        f"{request_id}: rune.licenses {license_id} has member/script/kind "
                        f"{got}, legacy has {(member, script, kind)}"
                    )
        return WindowResult(since, len(legacy), mismatched, time.monotonic() - started)
