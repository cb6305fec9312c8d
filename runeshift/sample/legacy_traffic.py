"""Realistic live writes to the legacy databases, at a steady rate, until stopped.

What the old forum and repo kept doing during the migration: members sign up (sometimes
with an email that differs from another member's only by case, or a mojibake name), change
email, get banned, visit (which reorders dedup winners), scripters upload versions that
get compiled, licenses are granted (some for members that no longer exist) and refunded,
reviews arrive with out-of-range ratings, and now and then a member or license is deleted,
a license id is renumbered (a key change), a slug becomes a case variant of another, a
group is renamed (MyISAM) or a profile edited (MyISAM). Every quirk the catch-up must carry
shows up in the stream. Deterministic for a seed (the sequence of actions, not the timing).

Each tick is one source transaction per database holding ``rate / ticks_per_second``
actions, so 5,000 writes/s is 50 transactions of ~100 rows, as a busy app would send.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runeshift.connections import mysql_connect

TICKS_PER_SECOND = 20
_NAMES = (
    "Jos\u00e9",
    "Zo\u00eb",
    "M\u00fcller",
    "Bj\u00f6rk",
    "Caf\u00e9",
    "Ren\u00e9e",
    "Ana",
    "Li",
)
_DOMAINS = ("gmail.com", "example.org", "Yahoo.com", "proton.me")


@dataclass
class TrafficSummary:
    seconds: float = 0.0
    writes: int = 0
    transactions: int = 0
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def writes_per_second(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "writes": self.writes,
            "transactions": self.transactions,
            "writes_per_second": round(self.writes_per_second, 1),
            "actions": dict(self.actions),
        }


class LegacyTraffic:
    """Generates legacy writes against ``forums_url`` and ``repo_url`` (database in the URL)."""

    def __init__(self, forums_url: str, repo_url: str, *, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.forums = mysql_connect(forums_url, autocommit=False)
        self.repo = mysql_connect(repo_url, autocommit=False)
        self.members = self._ids(self.forums, "SELECT member_id FROM core_members")
        self.emails = [
            r[0]
            for r in self._rows(self.forums, "SELECT email FROM core_members WHERE email <> ''")
        ]
        self.scripts = self._ids(self.repo, "SELECT id FROM scripts")
        self.versions = self._ids(self.repo, "SELECT id FROM script_versions")
        self.licenses = self._ids(self.repo, "SELECT id FROM licenses")
        self.groups = self._ids(self.forums, "SELECT g_id FROM core_groups")
        self.next_member = max(self.members, default=0) + 1
        # Renumbered ids count down from 10^12; AUTO_INCREMENT (which jumps past them) counts up.
        self.next_license = 10**12 - self.rng.randrange(10**6) * 1000
        self.summary = TrafficSummary()

    @staticmethod
    def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(sql)
            rows = list(cur.fetchall())
        conn.commit()
        return rows

    def _ids(self, conn: Any, sql: str) -> list[int]:
        return [int(r[0]) for r in self._rows(conn, sql)]

    # -- actions: each returns the number of rows it wrote ----------------------------------

    def signup(self, f: Any, r: Any) -> int:
        member = self.next_member
        self.next_member += 1
        rng = self.rng
        if self.emails and rng.random() < 0.15:
            base = rng.choice(self.emails)
            email = rng.choice((base.upper(), " " + base.title(), base.swapcase()))
        else:
            email = f"user{member}@{rng.choice(_DOMAINS)}"
        name = f"{rng.choice(_NAMES)}{member}".encode()  # UTF-8 bytes in a latin1 column
        now = int(time.time())
        f.execute(
            "INSERT INTO core_members (member_id, name, email, joined, member_group_id, mgroup_others, "
            "members_pass_hash, temp_ban, member_posts, last_visit, timezone, allow_admin_mails) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 0, 0, %s, %s, %s)",
            (
                member,
                name,
                email,
                now,
                rng.choice(self.groups or [3]),
                rng.choice(("", ",7,", ",7,12,")),
                "$2y$10$trafficgeneratedhashxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                now,
                rng.choice(("America/New_York", "", "GMT+2")),
                rng.choice((0, 1, 2)),
            ),
        )
        self.members.append(member)
        self.emails.append(email.strip())
        rows = 1
        if rng.random() < 0.7:
            r.execute(
                "INSERT IGNORE INTO auth0_links (member_id, auth0_sub, linked_at) VALUES (%s, %s, NOW())",
                (member, f"auth0|traffic{member:08x}"),
            )
            rows += 1
        if rng.random() < 0.5:
            f.execute(
                "INSERT IGNORE INTO core_pfields_content (member_id, field_1, field_2) VALUES (%s, %s, %s)",
                (member, f"rs{member}", "name#1234"),
            )
            rows += 1
        return rows

    def email_change(self, f: Any, r: Any) -> int:
        member = self.rng.choice(self.members)
        if self.emails and self.rng.random() < 0.3:
            email = self.rng.choice(self.emails).upper()
        else:
            email = f"changed{member}.{self.rng.randrange(10**6)}@{self.rng.choice(_DOMAINS)}"
        f.execute("UPDATE core_members SET email = %s WHERE member_id = %s", (email, member))
        return 1

    def ban(self, f: Any, r: Any) -> int:
        member = self.rng.choice(self.members)
        until = self.rng.choice((-1, 0, int(time.time()) + 86_400 * self.rng.randint(1, 30)))
        f.execute("UPDATE core_members SET temp_ban = %s WHERE member_id = %s", (until, member))
        return 1

    def visit(self, f: Any, r: Any) -> int:
        member = self.rng.choice(self.members)
        f.execute(
            "UPDATE core_members SET last_visit = %s, member_posts = member_posts + 1 WHERE member_id = %s",
            (int(time.time()) + self.rng.randrange(1000), member),
        )
        return 1

    def upload_and_compile(self, f: Any, r: Any) -> int:
        script = self.rng.choice(self.scripts)
        r.execute(
            "INSERT INTO script_versions (script_id, version, changelog, source_path, compile_status, "
            "uploaded_at) VALUES (%s, %s, %s, %s, 'queued', %s)",
            (
                script,
                f"1.{self.rng.randrange(99)}",
                "fix \U0001f600",
                f"/var/repo/{script}/src.zip",
                int(time.time()),
            ),
        )
        version = int(r.lastrowid)
        self.versions.append(version)
        state = self.rng.choice(("done", "failed", "pending"))
        r.execute(
            "INSERT INTO compile_jobs (version_id, state, claimed_at, finished_at, error) "
            "VALUES (%s, %s, NOW(), NOW(), %s)",
            (version, state, None if state == "done" else b"javac: erro\xe9"),
        )
        r.execute(
            "UPDATE script_versions SET compile_status = %s, compiled_at = %s WHERE id = %s",
            ("compiled" if state == "done" else "failed", int(time.time()), version),
        )
        return 3

    def license_grant(self, f: Any, r: Any) -> int:
        member = self.rng.choice(self.members) if self.rng.random() > 0.05 else 9_999_999
        r.execute(
            "INSERT INTO licenses (member_id, script_id, kind, starts_at, expires_at, price_paid, refunded, "
            "created_at) VALUES (%s, %s, %s, NOW(), %s, %s, 0, NOW())",
            (
                member,
                self.rng.choice(self.scripts),
                self.rng.choice(("monthly", "lifetime", "trial", "")),
                self.rng.choice(("0000-00-00 00:00:00", "2030-11-03 01:30:00")),
                f"{self.rng.randrange(0, 5000) / 100:.2f}",
            ),
        )
        self.licenses.append(int(r.lastrowid))
        return 1

    def refund(self, f: Any, r: Any) -> int:
        r.execute(
            "UPDATE licenses SET refunded = 1 WHERE id = %s", (self.rng.choice(self.licenses),)
        )
        return 1

    def review(self, f: Any, r: Any) -> int:
        r.execute(
            "INSERT INTO script_reviews (script_id, member_id, rating, body, created_at) "
            "VALUES (%s, %s, %s, %s, NOW()) ON DUPLICATE KEY UPDATE rating = VALUES(rating), body = VALUES(body)",
            (
                self.rng.choice(self.scripts),
                self.rng.choice(self.members),
                self.rng.choice((1, 2, 3, 4, 5, 5, 0, 6)),
                "great \u2728",
            ),
        )
        return 1

    def delete_member(self, f: Any, r: Any) -> int:
        if len(self.members) < 10:
            return 0
        member = self.members.pop(self.rng.randrange(len(self.members)))
        f.execute("DELETE FROM core_members WHERE member_id = %s", (member,))
        return 1

    def delete_license(self, f: Any, r: Any) -> int:
        if len(self.licenses) < 10:
            return 0
        license_id = self.licenses.pop(self.rng.randrange(len(self.licenses)))
        r.execute("DELETE FROM licenses WHERE id = %s", (license_id,))
        return 1

    def renumber_license(self, f: Any, r: Any) -> int:
        old = self.licenses.pop(self.rng.randrange(len(self.licenses)))
        new = self.next_license
        self.next_license -= 1
        r.execute("UPDATE licenses SET id = %s WHERE id = %s", (new, old))
        self.licenses.append(new)
        return 1

    def slug_variant(self, f: Any, r: Any) -> int:
        a, b = self.rng.sample(self.scripts, 2)
        r.execute(
            "UPDATE scripts s JOIN (SELECT slug FROM scripts WHERE id = %s) o "
            "SET s.slug = UPPER(o.slug) WHERE s.id = %s",
            (a, b),
        )
        return 1

    def rename_group(self, f: Any, r: Any) -> int:
        group = self.rng.choice(self.groups or [3])
        f.execute(
            "UPDATE core_groups SET g_title = %s WHERE g_id = %s",
            (f"Group {group} v{self.rng.randrange(1000)}", group),  # role keys must stay unique
        )
        return 1

    def edit_profile(self, f: Any, r: Any) -> int:
        member = self.rng.choice(self.members)
        f.execute(
            "INSERT INTO core_pfields_content (member_id, field_3) VALUES (%s, %s) "
            "ON DUPLICATE KEY UPDATE field_3 = VALUES(field_3)",
            (member, f"https://example.org/{self.rng.randrange(10**6)}"),
        )
        return 1

    def actions(self) -> list[tuple[str, Callable[[Any, Any], int], float]]:
        return [
            ("signup", self.signup, 8),
            ("email_change", self.email_change, 6),
            ("ban", self.ban, 3),
            ("visit", self.visit, 25),
            ("upload_and_compile", self.upload_and_compile, 6),
            ("license_grant", self.license_grant, 14),
            ("refund", self.refund, 4),
            ("review", self.review, 8),
            ("delete_member", self.delete_member, 0.7),
            ("delete_license", self.delete_license, 1),
            ("renumber_license", self.renumber_license, 0.7),
            ("slug_variant", self.slug_variant, 0.5),
            ("rename_group", self.rename_group, 0.3),
            ("edit_profile", self.edit_profile, 3),
        ]

    def tick(self, writes: int) -> int:
        """About ``writes`` row writes in one transaction per database; returns rows written."""
        table = self.actions()
        names = [a[0] for a in table]
        weights = [a[2] for a in table]
        fns = {a[0]: a[1] for a in table}
        done = 0
        with self.forums.cursor() as f, self.repo.cursor() as r:
            while done < writes:
                name = self.rng.choices(names, weights)[0]
                done += fns[name](f, r)
                self.summary.actions[name] += 1
        self.forums.commit()
        self.repo.commit()
        self.summary.writes += done
        self.summary.transactions += 2
        return done

    def run(
        self,
        rate: float,
        *,
        seconds: float | None = None,
        stop: threading.Event | None = None,
        total_writes: int | None = None,
    ) -> TrafficSummary:
        """Write ``rate`` rows/s until ``stop``, ``seconds`` or ``total_writes`` is reached."""
        stop = stop or threading.Event()
        started = time.monotonic()
        per_tick = max(1.0, rate / TICKS_PER_SECOND)
        interval = per_tick / rate
        due = started
        carry = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if seconds is not None and now - started >= seconds:
                break
            if total_writes is not None and self.summary.writes >= total_writes:
                break
            carry += per_tick
            want = int(carry)
            carry -= want
            if want:
                self.tick(want)
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(delay)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def close(self) -> None:
        self.forums.close()
        self.repo.close()
