"""The stand-in's store: the API over ``tribot_forums`` and ``tribot_repo`` as the PHP app used them.

Reads return what Rune would show for the same row (names decoded the way the migration
repairs them, emails trimmed and lowercased, New York DATETIMEs as UTC instants), so a
client cannot tell which side answered. Writes insert ``licenses`` rows the legacy way:
``starts_at``/``created_at``/``expires_at`` in New York local time, a zero date for "never
expires", ``price_paid`` as a decimal, no foreign keys; the ledger row commits with them
(see ``standin_ledger``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import pymysql

from runeshift.connections import mysql_connect, parse_mysql_url
from runeshift.errors import ConfigError
from services.legacy_service.standin_ledger import (
    DEFAULT_LEDGER_DB,
    LEDGER_TABLE,
    check_ledger_name,
    ledger_ddl,
    ledger_result,
)
from services.rune_service.connection_pool import ConnectionPool
from services.rune_service.shop_api import (
    LICENSE_TERMS,
    Account,
    ApiError,
    LicenseCheck,
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

NY = ZoneInfo("America/New_York")
ZERO_DATE = "0000-00-00 00:00:00"
_DUPLICATE_KEY = 1062

Conn: TypeAlias = "pymysql.connections.Connection[Any]"


def ny_now() -> datetime:
    """Wall-clock New York time without a zone, as the PHP app's ``date()`` gave it."""
    return datetime.now(NY).replace(tzinfo=None, microsecond=0)


def _ny_to_utc_iso(value: Any) -> str | None:
    if not isinstance(value, datetime):  # zero dates come back as text or None
        return None
    return value.replace(tzinfo=NY).astimezone(UTC).isoformat()


def _decode_name(raw: bytes) -> str:
    # latin1 columns hold UTF-8 bytes for most non-ASCII names and real cp1252 for the rest.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _ban_state(temp_ban: int) -> str:
    return "none" if temp_ban == 0 else "permanent" if temp_ban == -1 else "temporary"


class LegacyStore:
    """:class:`ShopStore` on the legacy MySQL databases; see the module note."""

    name: ServiceName = "legacy"

    def __init__(
        self,
        forums_url: str,
        repo_url: str,
        *,
        ledger_db: str = DEFAULT_LEDGER_DB,
        pool_size: int = 16,
    ) -> None:
        for setting, url in (("forums_url", forums_url), ("repo_url", repo_url)):
            if not parse_mysql_url(url).database:
                raise ConfigError(
                    f"setting '{setting}' must name the database ({url.split('@')[-1]})"
                )
        self.forums_db = parse_mysql_url(forums_url).database
        self.repo_db = parse_mysql_url(repo_url).database
        self.ledger_db = check_ledger_name(ledger_db)
        conn = mysql_connect(repo_url)
        try:
            with conn.cursor() as cur:
                for statement in ledger_ddl(self.ledger_db):
                    cur.execute(statement)
        finally:
            conn.close()
        self._forums: ConnectionPool[Conn] = ConnectionPool(
            lambda: mysql_connect(forums_url),
            lambda c: c.close(),
            size=pool_size,
            broken=(pymysql.Error,),
        )
        self._repo: ConnectionPool[Conn] = ConnectionPool(
            lambda: mysql_connect(repo_url, autocommit=False),
            lambda c: c.close(),
            size=pool_size,
            broken=(pymysql.Error,),
        )
        self._forums.warm(4)
        self._repo.warm(4)

    def close(self) -> None:
        self._forums.close()
        self._repo.close()

    def _repo_rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._repo.connection() as conn:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall())
            finally:
                conn.rollback()  # end the read snapshot: the next request must see new rows

    def ping(self) -> None:
        self._repo_rows("SELECT 1", ())
        with self._forums.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def account(self, member_id: int) -> Account | None:
        with self._forums.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT member_id, CAST(name AS BINARY), email, temp_ban FROM core_members "
                "WHERE member_id = %s",
                (member_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        email = (row[2] or "").strip().lower() or None
        return Account(int(row[0]), _decode_name(bytes(row[1])), email, _ban_state(int(row[3])))

    def scripts(self, limit: int, after: int | None) -> ScriptPage:
        rows = self._repo_rows(
            "SELECT id, CAST(name AS BINARY), slug, status, is_premium, monthly_price FROM scripts "
            "WHERE id > %s ORDER BY id LIMIT %s",
            (after or 0, limit),
        )
        entries = [
            ScriptEntry(
                script_id=int(r[0]),
                name=_decode_name(bytes(r[1])),
                slug=r[2],
                status=r[3] or "pending",
                is_premium=int(r[4]) != 0,
                monthly_price_minor=int(Decimal(r[5]) * 100) if r[5] is not None else None,
            )
            for r in rows
        ]
        return ScriptPage(entries, entries[-1].script_id if len(entries) == limit else None)

    def license_check(self, member_id: int, script_id: int) -> LicenseCheck:
        now = ny_now()
        rows = self._repo_rows(
            "SELECT kind, expires_at FROM licenses WHERE member_id = %s AND script_id = %s "
            "AND refunded = 0 AND starts_at <= %s "
            f"AND (expires_at = '{ZERO_DATE}' OR expires_at > %s) "
            f"ORDER BY expires_at = '{ZERO_DATE}' DESC, expires_at DESC LIMIT 1",
            (member_id, script_id, now, now),
        )
        if not rows:
            return LicenseCheck(member_id, script_id, active=False)
        return LicenseCheck(member_id, script_id, True, rows[0][0], _ny_to_utc_iso(rows[0][1]))

    def find_write(self, request_id: str) -> WriteResult | None:
        rows = self._repo_rows(
            f"SELECT kind, legacy_license_id FROM `{self.ledger_db}`.{LEDGER_TABLE} "
            "WHERE request_id = %s AND legacy_license_id IS NOT NULL",
            (request_id,),
        )
        return ledger_result(request_id, rows[0]) if rows else None

    def write_status(self, request_id: str) -> WriteStatus:
        result = self.find_write(request_id)
        if result is None:
            return WriteStatus(request_id, applied=False)
        return WriteStatus(
            request_id,
            applied=True,
            applied_by="legacy",
            kind=result.kind,
            license_id=result.license_id,
            legacy_license_id=result.legacy_license_id,
        )

    def _member_exists(self, member_id: int) -> bool:
        with self._forums.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM core_members WHERE member_id = %s", (member_id,))
            return cur.fetchone() is not None

    def apply_write(self, request: WriteRequest) -> WriteResult:
        kind: WriteKind = "order" if isinstance(request, OrderRequest) else "license"
        if not self._member_exists(request.member_id):
            raise ApiError(404, f"no member with id {request.member_id}")
        with self._repo.connection() as conn:
            try:
                with conn.cursor() as cur:
                    try:
                        cur.execute(
                            f"INSERT INTO `{self.ledger_db}`.{LEDGER_TABLE} "
                            "(request_id, kind, fingerprint) VALUES (%s, %s, %s)",
                            (request.request_id, kind, request.fingerprint()),
                        )
                    except pymysql.err.IntegrityError as exc:
                        if exc.args[0] != _DUPLICATE_KEY:
                            raise
                        conn.rollback()
                        return self._replay(cur, request, kind)
                    cur.execute("SELECT 1 FROM scripts WHERE id = %s", (request.script_id,))
                    if cur.fetchone() is None:
                        raise ApiError(404, f"no script with id {request.script_id}")
                    legacy_id = self._insert_license(cur, request)
                    cur.execute(
                        f"UPDATE `{self.ledger_db}`.{LEDGER_TABLE} SET legacy_license_id = %s "
                        "WHERE request_id = %s",
                        (legacy_id, request.request_id),
                    )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return WriteResult(
            request.request_id, kind, "legacy", str(uuid_for("license", legacy_id)), legacy_id
        )

    def _replay(self, cur: Any, request: WriteRequest, kind: WriteKind) -> WriteResult:
        cur.execute(
            f"SELECT kind, fingerprint, legacy_license_id FROM `{self.ledger_db}`.{LEDGER_TABLE} "
            "WHERE request_id = %s",
            (request.request_id,),
        )
        row = cur.fetchone()
        if row is None or row[2] is None:
            raise ApiError(409, f"request_id {request.request_id!r} is being applied; retry it")
        if row[0] != kind or row[1] != request.fingerprint():
            raise ApiError(
                409,
                f"request_id {request.request_id!r} was already used for a different write; "
                f"use a new request_id for a new write",
            )
        return ledger_result(request.request_id, (row[0], row[2]))

    @staticmethod
    def _insert_license(cur: Any, request: WriteRequest) -> int:
        now = ny_now()
        term = LICENSE_TERMS[request.kind]
        expires: datetime | str = ZERO_DATE if term is None else now + term
        paid = (
            Decimal(request.price_minor) / 100 if isinstance(request, OrderRequest) else Decimal(0)
        )
        cur.execute(
            "INSERT INTO licenses (member_id, script_id, kind, starts_at, expires_at, price_paid, "
            "refunded, created_at) VALUES (%s, %s, %s, %s, %s, %s, 0, %s)",
            (request.member_id, request.script_id, request.kind, now, expires, f"{paid:.2f}", now),
        )
        return int(cur.lastrowid)
