"""The member and script ids the load generator draws from: the generated legacy world's, as
migrated (so every id exists on both sides and a lookup never 404s by construction)."""

from __future__ import annotations

from dataclasses import dataclass

from runeshift.connections import mysql_connect, pg_connect
from runeshift.errors import ConfigError


@dataclass(frozen=True)
class WorldIds:
    member_ids: tuple[int, ...]
    script_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.member_ids or not self.script_ids:
            raise ConfigError(
                "the load needs at least one member and one script; generate a legacy world "
                "('runeshift sample legacy') and backfill it first"
            )


def world_ids_from_rune(postgres_url: str, *, limit: int = 5000) -> WorldIds:
    """Legacy member and script ids that were migrated to ``rune`` (present on both sides)."""
    with pg_connect(postgres_url, autocommit=True) as conn:
        members = conn.execute(
            "SELECT legacy_member_id FROM rune.accounts WHERE legacy_member_id IS NOT NULL "
            "ORDER BY legacy_member_id LIMIT %s",
            (limit,),
        ).fetchall()
        scripts = conn.execute(
            "SELECT legacy_script_id FROM rune.scripts WHERE legacy_script_id IS NOT NULL "
            "ORDER BY legacy_script_id LIMIT %s",
            (limit,),
        ).fetchall()
    return WorldIds(tuple(int(r[0]) for r in members), tuple(int(r[0]) for r in scripts))


def world_ids_from_legacy(forums_url: str, repo_url: str, *, limit: int = 5000) -> WorldIds:
    """Member and script ids straight from the legacy databases (before any backfill)."""
    ids: list[tuple[int, ...]] = []
    for url, sql in (
        (forums_url, "SELECT member_id FROM core_members ORDER BY member_id LIMIT %s"),
        (repo_url, "SELECT id FROM scripts ORDER BY id LIMIT %s"),
    ):
        conn = mysql_connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, (limit,))
                ids.append(tuple(int(r[0]) for r in cur.fetchall()))
        finally:
            conn.close()
    return WorldIds(ids[0], ids[1])
