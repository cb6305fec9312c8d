"""Where every quirk of ``shared/legacy/README.md`` sits in a generated legacy world.

One :class:`LegacyQuirk` per concrete case of a README quirk (the README's number, a stable key,
a description and a SQL query that returns the rows showing it). The first column of every query
identifies the row (a member id, a license id, ...), so later stages can pick specific rows:
``find_quirk_rows(url, "orphan-license-member")[0][0]`` is the id of an orphan license.

Queries are templates over ``{forums}`` and ``{repo}`` so they run against renamed copies. They
compare text with ``BINARY`` where it matters: the legacy columns are ``latin1_swedish_ci``,
under which ``'STORE ' = 'store'`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runeshift.connections import mysql_connect
from runeshift.errors import ConfigError
from runeshift.sample.legacy_clock import (
    WORLD_NOW,
    DatetimeFormatter,
    dst_fall_back_hours,
    dst_spring_gap_hours,
)
from runeshift.sample.legacy_ddl import check_database_name
from runeshift.sample.secret_canary import SECRET_CANARY

# A UTF-8 lead byte followed by a continuation byte, at a byte boundary of HEX(col).
_UTF8_PAIR = "'^(..)*(C[2-9A-F]|D[0-9A-F]|E[0-9A-F]|F[0-4])[89AB][0-9A-F]'"
_HIGH_BYTE = "'^(..)*[89A-F][0-9A-F]'"
_FOUR_BYTE = "'^(..)*F[0-4][89AB][0-9A-F]'"
_YEARS = range(2012, 2025)


def _hour_ranges(column: str, ranges: list[tuple[int, int]]) -> str:
    fmt = DatetimeFormatter()
    parts = [f"{column} BETWEEN '{fmt(lo)}' AND '{fmt(hi - 1)}'" for lo, hi in ranges]
    return "(" + " OR ".join(parts) + ")"


@dataclass(frozen=True)
class LegacyQuirk:
    """One concrete case of a README quirk and the query that finds its rows."""

    number: int
    key: str
    description: str
    sql: str

    def query(self, forums_db: str = "tribot_forums", repo_db: str = "tribot_repo") -> str:
        """The SQL for databases named ``forums_db`` and ``repo_db``."""
        return self.sql.format(
            forums=check_database_name(forums_db), repo=check_database_name(repo_db)
        )


QUIRKS: tuple[LegacyQuirk, ...] = (
    LegacyQuirk(
        1,
        "mojibake-member-with-licenses",
        "member whose latin1 name holds UTF-8 bytes (b'Jos\\xc3\\xa9') and who has licenses",
        "SELECT m.member_id, HEX(m.name) FROM {forums}.core_members m "
        f"WHERE HEX(m.name) REGEXP {_UTF8_PAIR} "
        "AND EXISTS (SELECT 1 FROM {repo}.licenses l WHERE l.member_id = m.member_id) "
        "ORDER BY m.member_id",
    ),
    LegacyQuirk(
        1,
        "latin1-member-name",
        "member whose latin1 name is real latin1 (b'Caf\\xe9'), not UTF-8 bytes",
        "SELECT member_id, HEX(name) FROM {forums}.core_members "
        f"WHERE HEX(name) REGEXP {_HIGH_BYTE} AND NOT HEX(name) REGEXP {_UTF8_PAIR} "
        "ORDER BY member_id",
    ),
    LegacyQuirk(
        1,
        "mojibake-script-name",
        "script whose latin1 name holds UTF-8 bytes",
        f"SELECT id, HEX(name) FROM {{repo}}.scripts WHERE HEX(name) REGEXP {_UTF8_PAIR} "
        "ORDER BY id",
    ),
    LegacyQuirk(
        2,
        "utf8mb4-4byte-changelog",
        "script version whose utf8mb4 changelog holds a 4-byte character (emoji)",
        "SELECT id, changelog FROM {repo}.script_versions "
        f"WHERE HEX(changelog) REGEXP {_FOUR_BYTE} ORDER BY id",
    ),
    LegacyQuirk(
        2,
        "utf8mb4-4byte-review",
        "review whose utf8mb4 body holds a 4-byte character (emoji)",
        f"SELECT id, body FROM {{repo}}.script_reviews WHERE HEX(body) REGEXP {_FOUR_BYTE} "
        "ORDER BY id",
    ),
    LegacyQuirk(
        2,
        "huge-compile-log",
        "MEDIUMTEXT compile log of several MB",
        "SELECT id, LENGTH(compile_log) FROM {repo}.script_versions "
        "WHERE LENGTH(compile_log) >= 2000000 ORDER BY id",
    ),
    LegacyQuirk(
        3,
        "untrimmed-mixed-case-source",
        "instance pack whose source is untrimmed or not lower case ('STORE ')",
        "SELECT id, source FROM {repo}.instance_packs "
        "WHERE BINARY source <> BINARY LOWER(TRIM(source)) ORDER BY id",
    ),
    LegacyQuirk(
        3,
        "blank-email",
        "member with a blank email ('' meaning none)",
        "SELECT member_id FROM {forums}.core_members WHERE BINARY email = '' ORDER BY member_id",
    ),
    LegacyQuirk(
        4,
        "lifetime-license-zero-expiry",
        "license whose expires_at is the zero date (never expires)",
        "SELECT id, kind FROM {repo}.licenses WHERE expires_at = '0000-00-00 00:00:00' ORDER BY id",
    ),
    LegacyQuirk(
        4,
        "zero-created-script",
        "script whose created_at is the zero date",
        "SELECT id FROM {repo}.scripts WHERE created_at = '0000-00-00 00:00:00' ORDER BY id",
    ),
    LegacyQuirk(
        5,
        "dst-ambiguous-license-start",
        "license starts_at inside a New York fall-back hour (that wall time happened twice)",
        "SELECT id, starts_at FROM {repo}.licenses WHERE "
        + _hour_ranges("starts_at", dst_fall_back_hours(_YEARS))
        + " ORDER BY id",
    ),
    LegacyQuirk(
        5,
        "dst-nonexistent-license-start",
        "license starts_at inside a New York spring-forward hour (that wall time never existed)",
        "SELECT id, starts_at FROM {repo}.licenses WHERE "
        + _hour_ranges("starts_at", dst_spring_gap_hours(_YEARS))
        + " ORDER BY id",
    ),
    LegacyQuirk(
        5,
        "timestamp-utc-vs-datetime-local",
        "license whose updated_at (TIMESTAMP, UTC) reads 4-5 hours after created_at (DATETIME, NY)",
        "SELECT id, created_at, updated_at FROM {repo}.licenses "
        "WHERE refunded = 0 AND TIMESTAMPDIFF(MINUTE, created_at, updated_at) BETWEEN 240 AND 302 "
        "ORDER BY id",
    ),
    LegacyQuirk(
        5,
        "unix-zero-unknown",
        "member whose joined (INT unix seconds) is 0 = unknown",
        "SELECT member_id FROM {forums}.core_members WHERE joined = 0 ORDER BY member_id",
    ),
    LegacyQuirk(
        5,
        "unix-zero-never",
        "script version never compiled (compiled_at = 0)",
        "SELECT id FROM {repo}.script_versions WHERE compiled_at = 0 ORDER BY id",
    ),
    LegacyQuirk(
        6,
        "temp-ban-permanent",
        "member with temp_ban = -1 (permanent)",
        "SELECT member_id FROM {forums}.core_members WHERE temp_ban = -1 ORDER BY member_id",
    ),
    LegacyQuirk(
        6,
        "temp-ban-future",
        "member banned until a unix time after the snapshot",
        f"SELECT member_id, temp_ban FROM {{forums}}.core_members WHERE temp_ban > {WORLD_NOW} "
        "ORDER BY member_id",
    ),
    LegacyQuirk(
        6,
        "temp-ban-past",
        "member whose ban expired (unix time before the snapshot)",
        "SELECT member_id, temp_ban FROM {forums}.core_members "
        f"WHERE temp_ban > 0 AND temp_ban <= {WORLD_NOW} ORDER BY member_id",
    ),
    *(
        LegacyQuirk(
            7,
            f"tinyint-flag-{label}",
            f"TINYINT(1) flag holding {value}",
            "SELECT member_id, allow_admin_mails FROM {forums}.core_members "
            f"WHERE allow_admin_mails = {value} ORDER BY member_id",
        )
        for label, value in (("2", 2), ("127", 127), ("minus-1", -1))
    ),
    LegacyQuirk(
        7,
        "enum-empty-category",
        "script whose ENUM category is '' (invalid value stored in non-strict mode)",
        "SELECT id FROM {repo}.scripts WHERE category = '' ORDER BY id",
    ),
    LegacyQuirk(
        7,
        "enum-empty-status",
        "script whose ENUM status is ''",
        "SELECT id FROM {repo}.scripts WHERE status = '' ORDER BY id",
    ),
    LegacyQuirk(
        7,
        "enum-empty-compile-status",
        "script version whose ENUM compile_status is ''",
        "SELECT id FROM {repo}.script_versions WHERE compile_status = '' ORDER BY id",
    ),
    LegacyQuirk(
        7,
        "set-several-tags",
        "script whose SET tags hold several values",
        "SELECT id, tags FROM {repo}.scripts WHERE tags LIKE '%,%' ORDER BY id",
    ),
    LegacyQuirk(
        7,
        "set-empty-tags",
        "script whose SET tags are ''",
        "SELECT id FROM {repo}.scripts WHERE tags = '' ORDER BY id",
    ),
    LegacyQuirk(
        7,
        "unsigned-bigint-order-id-above-2-53",
        "license whose shopify_order_id (BIGINT UNSIGNED) is above 2^53",
        "SELECT id, shopify_order_id FROM {repo}.licenses "
        f"WHERE shopify_order_id > {2**53} ORDER BY id",
    ),
    LegacyQuirk(
        8,
        "php-serialized-settings",
        "script whose settings BLOB is a complete PHP serialize()d array",
        "SELECT id, settings FROM {repo}.scripts "
        "WHERE settings LIKE 'a:%' AND settings LIKE '%}}' ORDER BY id",
    ),
    LegacyQuirk(
        8,
        "truncated-php-settings",
        "script whose settings BLOB is a truncated, unparseable PHP serialize()d array",
        "SELECT id, settings FROM {repo}.scripts "
        "WHERE settings LIKE 'a:%' AND settings NOT LIKE '%}}' ORDER BY id",
    ),
    LegacyQuirk(
        9,
        "comma-list-leading-trailing",
        "member whose mgroup_others has leading and trailing commas (',7,12,')",
        "SELECT member_id, mgroup_others FROM {forums}.core_members "
        "WHERE mgroup_others LIKE ',%,' ORDER BY member_id",
    ),
    LegacyQuirk(
        10,
        "orphan-license-member",
        "license whose member was deleted (created while the member existed)",
        "SELECT l.id, l.member_id FROM {repo}.licenses l WHERE NOT EXISTS "
        "(SELECT 1 FROM {forums}.core_members m WHERE m.member_id = l.member_id) ORDER BY l.id",
    ),
    LegacyQuirk(
        10,
        "orphan-license-script",
        "license whose script was deleted",
        "SELECT l.id, l.script_id FROM {repo}.licenses l WHERE NOT EXISTS "
        "(SELECT 1 FROM {repo}.scripts s WHERE s.id = l.script_id) ORDER BY l.id",
    ),
    LegacyQuirk(
        10,
        "orphan-review-member",
        "review whose member was deleted",
        "SELECT r.id, r.member_id FROM {repo}.script_reviews r WHERE NOT EXISTS "
        "(SELECT 1 FROM {forums}.core_members m WHERE m.member_id = r.member_id) ORDER BY r.id",
    ),
    LegacyQuirk(
        10,
        "orphan-review-script",
        "review whose script was deleted",
        "SELECT r.id, r.script_id FROM {repo}.script_reviews r WHERE NOT EXISTS "
        "(SELECT 1 FROM {repo}.scripts s WHERE s.id = r.script_id) ORDER BY r.id",
    ),
    LegacyQuirk(
        10,
        "orphan-script-author",
        "script whose author was deleted",
        "SELECT s.id, s.author_id FROM {repo}.scripts s WHERE NOT EXISTS "
        "(SELECT 1 FROM {forums}.core_members m WHERE m.member_id = s.author_id) ORDER BY s.id",
    ),
    LegacyQuirk(
        10,
        "deleted-primary-group",
        "member whose member_group_id points at a deleted group",
        "SELECT m.member_id, m.member_group_id FROM {forums}.core_members m WHERE NOT EXISTS "
        "(SELECT 1 FROM {forums}.core_groups g WHERE g.g_id = m.member_group_id) "
        "ORDER BY m.member_id",
    ),
    LegacyQuirk(
        11,
        "email-case-variant-pair",
        "emails equal after trimming and lower-casing but stored differently "
        "(row: normalized email, member ids)",
        "SELECT LOWER(TRIM(email)) AS normalized, "
        "GROUP_CONCAT(member_id ORDER BY member_id) FROM {forums}.core_members "
        "WHERE TRIM(email) <> '' GROUP BY LOWER(TRIM(email)) "
        "HAVING COUNT(DISTINCT CAST(email AS BINARY)) > 1 ORDER BY normalized",
    ),
    LegacyQuirk(
        11,
        "slug-case-variant-pair",
        "script slugs differing only by case (row: lower-cased slug, script ids)",
        "SELECT LOWER(slug) AS normalized, GROUP_CONCAT(id ORDER BY id) FROM {repo}.scripts "
        "GROUP BY LOWER(slug) HAVING COUNT(DISTINCT CAST(slug AS BINARY)) > 1 ORDER BY normalized",
    ),
    LegacyQuirk(
        12,
        "review-rating-0",
        "review rated 0 (old bug)",
        "SELECT id FROM {repo}.script_reviews WHERE rating = 0 ORDER BY id",
    ),
    LegacyQuirk(
        12,
        "review-rating-6",
        "review rated 6 (old bug)",
        "SELECT id FROM {repo}.script_reviews WHERE rating = 6 ORDER BY id",
    ),
    LegacyQuirk(
        12,
        "negative-instance-slots",
        "instance pack with negative slots (a staff correction)",
        "SELECT id, slots FROM {repo}.instance_packs WHERE slots < 0 ORDER BY id",
    ),
    LegacyQuirk(
        13,
        "secret-password-hashes",
        "members_pass_hash / members_pass_salt values (secrets carrying the canary)",
        "SELECT member_id FROM {forums}.core_members "
        f"WHERE members_pass_hash LIKE '%{SECRET_CANARY}%' "
        f"AND members_pass_salt LIKE '{SECRET_CANARY}%' ORDER BY member_id",
    ),
    LegacyQuirk(
        13,
        "secret-api-sessions",
        "api_sessions rows (ephemeral session tokens carrying the canary)",
        f"SELECT token FROM {{repo}}.api_sessions WHERE token LIKE '{SECRET_CANARY}%' "
        "ORDER BY token",
    ),
    LegacyQuirk(
        14,
        "abandoned-compile-job",
        "compile job still 'pending' (abandoned)",
        "SELECT id, version_id FROM {repo}.compile_jobs WHERE state = 'pending' ORDER BY id",
    ),
    LegacyQuirk(
        15,
        "non-transactional-engines",
        "tables on MyISAM (core_groups, core_pfields_content) or MEMORY (api_sessions)",
        "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA IN ('{forums}', '{repo}') AND ENGINE IN ('MyISAM', 'MEMORY') "
        "ORDER BY TABLE_NAME",
    ),
    LegacyQuirk(
        16,
        "shopify-order-several-lines",
        "Shopify order behind several licenses, each with its own line id",
        "SELECT shopify_order_id, COUNT(*), COUNT(DISTINCT shopify_line_id) FROM {repo}.licenses "
        "WHERE shopify_order_id IS NOT NULL GROUP BY shopify_order_id HAVING COUNT(*) > 1 "
        "ORDER BY shopify_order_id",
    ),
)

_BY_KEY = {q.key: q for q in QUIRKS}


def quirk(key: str) -> LegacyQuirk:
    """The catalogue entry named ``key``."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ConfigError(
            f"unknown legacy quirk {key!r}; known: {', '.join(sorted(_BY_KEY))}"
        ) from None


def find_quirk_rows(
    server_url: str,
    key: str,
    *,
    forums_db: str = "tribot_forums",
    repo_db: str = "tribot_repo",
    limit: int | None = None,
) -> list[tuple[Any, ...]]:
    """Rows showing quirk ``key`` in a generated world (first column identifies the row)."""
    sql = quirk(key).query(forums_db, repo_db)
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    conn = mysql_connect(server_url, database="")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()
