"""The Rune service's store: the API over the ``rune`` Postgres schema.

Rows Rune creates get ids derived from the client's request id (uuid5 of
``rune_license:<request_id>``, ``rune_order:...``, ``rune_order_item:...``), so they can
never collide with migrated rows (uuid5 of ``license:<legacy id>``). Legacy provenance
columns (``legacy_*``) stay NULL on them, except during the soak (decision 0007): while
reverse replication is prepared, the sequence ``runeshift.reverse_license_keys`` exists
and a new license takes its ``legacy_license_id`` from it, with the id a migrated row of
that key has (uuid5 of ``license:<key>``), so reverse replication writes it into legacy
under that key and the forward catch-up, after a rollback, updates the same Rune row. A
replayed request is answered from the ledger, which holds the id (a replay that lost the
claim race has used up a key: gaps are harmless). Timestamps are written to the second:
legacy's DATETIME columns have no fractions, and the reverse reconcile compares exactly.

The idempotency ledger is ``rune_service.write_requests``, in a schema this service creates
itself at start (``ensure_ledger``), outside ``rune`` (the product schema, versioned by the
migrations) and ``runeshift`` (the migration's state): one row per applied write, written in
the same transaction as the rows the write created, so a committed write always has its
ledger row and a retry finds it.

When ``legacy_ledger`` is given (the stand-in's ledger, see
``services.legacy_service.standin_ledger``), a write the legacy stand-in already applied is
answered from there instead of applied twice (if that ledger is unreachable, e.g. legacy was
switched off after the cutover, writes go on without the check), and ``GET /writes/{id}`` reports legacy writes
too, with whether the catch-up has brought their row to ``rune.licenses`` yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from runeshift.connections import pg_connect
from runeshift.errors import TransientError
from services.rune_service.connection_pool import ConnectionPool
from services.rune_service.shop_api import (
    LICENSE_TERMS,
    Account,
    ApiError,
    LicenseCheck,
    LicenseGrant,
    OrderRequest,
    ScriptEntry,
    ScriptPage,
    ServiceName,
    WriteKind,
    WriteRequest,
    WriteResult,
    WriteStatus,
)
from transform.identity_keys import uuid_for

LEDGER_SCHEMA = "rune_service"
_LEDGER_LOCK = 0x52554E45_0007  # pg advisory lock key: one ledger DDL at a time
_LEDGER_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {LEDGER_SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {LEDGER_SCHEMA}.write_requests (
        request_id  text PRIMARY KEY,
        kind        text NOT NULL CONSTRAINT ck_write_requests_kind CHECK (kind IN ('order', 'license')),
        fingerprint text NOT NULL,
        license_id  uuid NOT NULL,
        order_id    uuid,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )""",
)

# Exists only while reverse replication is prepared (runeshift/reverse_sync.py makes it).
LICENSE_KEYS = "runeshift.reverse_license_keys"

LegacyLedger = Callable[[str], WriteResult | None]


def ensure_ledger(postgres_url: str) -> None:
    """Create the ``rune_service`` schema and its ledger table if missing (idempotent)."""
    with pg_connect(postgres_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LEDGER_LOCK,))
        for statement in _LEDGER_DDL:
            conn.execute(statement)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class RuneStore:
    """:class:`ShopStore` on Postgres; see the module note."""

    name: ServiceName = "rune"

    def __init__(
        self, postgres_url: str, *, legacy_ledger: LegacyLedger | None = None, pool_size: int = 16
    ) -> None:
        ensure_ledger(postgres_url)
        self._legacy_ledger = legacy_ledger
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            lambda: pg_connect(postgres_url, autocommit=True),
            lambda conn: conn.close(),
            size=pool_size,
            broken=(psycopg.Error,),
        )
        self._pool.warm(4)

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        with self._pool.connection() as conn:
            conn.execute("SELECT 1").fetchone()

    def account(self, member_id: int) -> Account | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT legacy_member_id, display_name, email, ban_state "
                "FROM rune.accounts WHERE legacy_member_id = %s",
                (member_id,),
            ).fetchone()
        return Account(*row) if row else None

    def scripts(self, limit: int, after: int | None) -> ScriptPage:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT legacy_script_id, name, slug, status, is_premium, monthly_price_minor "
                "FROM rune.scripts WHERE legacy_script_id > %s "
                "ORDER BY legacy_script_id LIMIT %s",
                (after or 0, limit),
            ).fetchall()
        entries = [ScriptEntry(*row) for row in rows]
        return ScriptPage(entries, entries[-1].script_id if len(entries) == limit else None)

    def license_check(self, member_id: int, script_id: int) -> LicenseCheck:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT l.kind, l.expires_at FROM rune.licenses l "
                "JOIN rune.accounts a ON a.id = l.account_id "
                "JOIN rune.scripts s ON s.id = l.script_id "
                "WHERE a.legacy_member_id = %s AND s.legacy_script_id = %s AND NOT l.refunded "
                "AND l.starts_at <= now() AND (l.expires_at IS NULL OR l.expires_at > now()) "
                "ORDER BY l.expires_at DESC NULLS FIRST LIMIT 1",
                (member_id, script_id),
            ).fetchone()
        if row is None:
            return LicenseCheck(member_id, script_id, active=False)
        return LicenseCheck(member_id, script_id, True, row[0], _iso(row[1]))

    def find_write(self, request_id: str) -> WriteResult | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT kind, license_id, order_id FROM {LEDGER_SCHEMA}.write_requests "
                "WHERE request_id = %s",
                (request_id,),
            ).fetchone()
        if row is None:
            return None
        return WriteResult(
            request_id, row[0], "rune", str(row[1]), None, _iso_uuid(row[2]), replayed=True
        )

    def write_status(self, request_id: str) -> WriteStatus:
        result = self.find_write(request_id)
        if result is None and self._legacy_ledger is not None:
            result = self._legacy_ledger(request_id)
        if result is None:
            return WriteStatus(request_id, applied=False)
        with self._pool.connection() as conn:
            found = conn.execute(
                "SELECT legacy_license_id FROM rune.licenses WHERE id = %s", (result.license_id,)
            ).fetchone()
        legacy_id = result.legacy_license_id
        if legacy_id is None and found is not None and found[0] is not None:
            legacy_id = int(found[0])  # a license Rune keyed during the soak (decision 0007)
        return WriteStatus(
            request_id,
            applied=True,
            applied_by=result.applied_by,
            kind=result.kind,
            license_id=result.license_id,
            legacy_license_id=legacy_id,
            in_rune=found is not None,
        )

    def apply_write(self, request: WriteRequest) -> WriteResult:
        kind: WriteKind = "order" if isinstance(request, OrderRequest) else "license"
        if self._legacy_ledger is not None:
            try:
                earlier = self._legacy_ledger(request.request_id)
            except TransientError:
                # Legacy MySQL gone (decommissioned after the cutover, or down): Rune keeps
                # taking writes. Only a retry of a pre-switch legacy write could slip through.
                earlier = None
            if earlier is not None:
                return earlier
        order_id = uuid_for("rune_order", request.request_id) if kind == "order" else None
        with self._pool.connection() as conn, conn.transaction():
            legacy_key = self._legacy_key(conn)
            license_id = (
                uuid_for("rune_license", request.request_id)
                if legacy_key is None
                else uuid_for("license", legacy_key)
            )
            claimed = conn.execute(
                f"INSERT INTO {LEDGER_SCHEMA}.write_requests "
                "(request_id, kind, fingerprint, license_id, order_id) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
                (request.request_id, kind, request.fingerprint(), license_id, order_id),
            ).fetchone()
            if claimed is None:
                return self._replay(conn, request, kind)
            account = conn.execute(
                "SELECT id, email FROM rune.accounts WHERE legacy_member_id = %s",
                (request.member_id,),
            ).fetchone()
            if account is None:
                raise ApiError(404, f"no account with legacy member id {request.member_id}")
            script = conn.execute(
                "SELECT id FROM rune.scripts WHERE legacy_script_id = %s", (request.script_id,)
            ).fetchone()
            if script is None:
                raise ApiError(404, f"no script with legacy script id {request.script_id}")
            order_item_id = None
            if isinstance(request, OrderRequest):
                order_item_id = self._insert_order(conn, request, account, script[0])
            self._insert_license(
                conn, request, license_id, legacy_key, account[0], script[0], order_item_id
            )
        return WriteResult(
            request.request_id, kind, "rune", str(license_id), None, _iso_uuid(order_id)
        )

    @staticmethod
    def _legacy_key(conn: psycopg.Connection[Any]) -> int | None:
        """The next legacy license id while reverse replication is prepared, else None."""
        # nextval(NULL) is NULL: outside the soak the sequence does not exist.
        row = conn.execute(f"SELECT nextval(to_regclass('{LICENSE_KEYS}'))").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @staticmethod
    def _replay(
        conn: psycopg.Connection[Any], request: WriteRequest, kind: WriteKind
    ) -> WriteResult:
        row = conn.execute(
            f"SELECT kind, fingerprint, license_id, order_id FROM {LEDGER_SCHEMA}.write_requests "
            "WHERE request_id = %s",
            (request.request_id,),
        ).fetchone()
        assert row is not None  # ON CONFLICT waited for the other transaction to commit
        if row[0] != kind or row[1] != request.fingerprint():
            raise ApiError(
                409,
                f"request_id {request.request_id!r} was already used for a different write; "
                f"use a new request_id for a new write",
            )
        return WriteResult(
            request.request_id, row[0], "rune", str(row[2]), None, _iso_uuid(row[3]), replayed=True
        )

    @staticmethod
    def _insert_order(
        conn: psycopg.Connection[Any], request: OrderRequest, account: Any, script_id: Any
    ) -> Any:
        order_id = uuid_for("rune_order", request.request_id)
        item_id = uuid_for("rune_order_item", request.request_id)
        interval = "lifetime" if request.kind in ("lifetime", "staff") else "monthly"
        sku = f"script-{request.script_id}-{interval}"
        conn.execute(
            "INSERT INTO rune.orders (id, name, account_id, email, currency, presentment_currency, "
            "subtotal_minor, total_minor, financial_status, placed_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'paid', now(), now())",
            (
                order_id,
                f"#R{order_id.hex[:10].upper()}",
                account[0],
                account[1],
                request.currency,
                request.currency,
                request.price_minor,
                request.price_minor,
            ),
        )
        conn.execute(
            "INSERT INTO rune.order_items (id, order_id, price_id, script_id, sku, title, quantity, "
            "unit_price_minor, currency) VALUES (%s, %s, "
            "(SELECT id FROM rune.prices WHERE sku = %s), %s, %s, %s, 1, %s, %s)",
            (
                item_id,
                order_id,
                sku,
                script_id,
                sku,
                f"Script {request.script_id} ({request.kind})",
                request.price_minor,
                request.currency,
            ),
        )
        return item_id

    @staticmethod
    def _insert_license(
        conn: psycopg.Connection[Any],
        request: LicenseGrant | OrderRequest,
        license_id: Any,
        legacy_key: int | None,
        account_id: Any,
        script_id: Any,
        order_item_id: Any,
    ) -> None:
        term = LICENSE_TERMS[request.kind]
        paid = request.price_minor if isinstance(request, OrderRequest) else 0
        currency = request.currency if isinstance(request, OrderRequest) else None
        conn.execute(
            "WITH t AS (SELECT date_trunc('second', now()) AS now) "
            "INSERT INTO rune.licenses (id, legacy_license_id, account_id, script_id, kind, "
            "starts_at, expires_at, order_item_id, price_paid_minor, price_currency, "
            "created_at, updated_at) "
            "SELECT %s, %s, %s, %s, %s, t.now, t.now + %s::interval, %s, %s, %s, t.now, t.now "
            "FROM t",
            (
                license_id,
                legacy_key,
                account_id,
                script_id,
                request.kind,
                term,
                order_item_id,
                paid,
                currency,
            ),
        )


def _iso_uuid(value: Any) -> str | None:
    return str(value) if value is not None else None
