"""The cutover journal: every gate outcome and step, in ``runeshift.cutover_journal``.

Design note. A plan is one row of ``runeshift.cutover_state`` (its ``stage`` is the last
stage *reached*: all its gates held and all its steps are done) plus an append-only list of
journal entries. Each entry is ``(stage, step, action, status, detail)`` and is committed on
its own before the runner moves on, so after a crash the journal says exactly which steps
had started and which had finished. What a plan has applied is derived from the journal, not
kept elsewhere: a step is applied when its latest entry is an ``apply`` (``started`` counts:
a step killed half way is treated as applied, and because every step is idempotent both
re-applying and reversing it are safe). Gate outcomes are journaled as steps named
``gate:<name>``; they record who checked what, and are never reversed.

The plan options (thresholds, budgets) are the ``detail`` of the plan's first entry, so a
resumed ``advance`` in another process uses the same numbers. One runner at a time holds a
PostgreSQL advisory lock on the plan; a second ``advance`` is refused, never interleaved.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from runeshift.connections import pg_connect
from runeshift.errors import ConfigError, FatalError

Action = Literal["apply", "reverse"]
Status = Literal["started", "done", "failed"]
PLANNED = "planned"
ABORTED = "aborted"
GATE_PREFIX = "gate:"
PLAN_STEP = "plan"
_PLAN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LOCK_NAMESPACE = 0x52554E45  # 'RUNE': the first key of the two-key advisory lock


@dataclass(frozen=True)
class JournalEntry:
    """One row of ``runeshift.cutover_journal``."""

    id: int
    stage: str
    step: str
    action: Action
    status: Status
    detail: dict[str, Any]
    at: datetime

    @property
    def is_gate(self) -> bool:
        return self.step.startswith(GATE_PREFIX)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "step": self.step,
            "action": self.action,
            "status": self.status,
            "detail": self.detail,
            "at": self.at.isoformat(),
        }


def check_plan_id(plan_id: str) -> str:
    if not _PLAN_ID.match(plan_id):
        raise ConfigError(
            f"plan id {plan_id!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return plan_id


class CutoverJournal:
    """The journal and state of one plan, on its own autocommit connection."""

    def __init__(self, postgres_url: str, plan_id: str) -> None:
        self.plan_id = check_plan_id(plan_id)
        self._conn: psycopg.Connection[Any] = pg_connect(postgres_url, autocommit=True)
        self._locked = False

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> CutoverJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def create(postgres_url: str, plan_id: str, options: dict[str, Any]) -> CutoverJournal:
        """Start a new plan at stage ``planned``; refuses an id that already exists."""
        journal = CutoverJournal(postgres_url, plan_id)
        try:
            with journal._conn.transaction():
                row = journal._conn.execute(
                    "INSERT INTO runeshift.cutover_state (plan_id, stage) VALUES (%s, %s) "
                    "ON CONFLICT (plan_id) DO NOTHING RETURNING plan_id",
                    (plan_id, PLANNED),
                ).fetchone()
                if row is None:
                    raise ConfigError(
                        f"cutover plan {plan_id!r} already exists; pick another --plan-id or "
                        "continue it with 'runeshift cutover advance'"
                    )
                journal._insert(PLANNED, PLAN_STEP, "apply", "done", options)
        except BaseException:
            journal.close()
            raise
        return journal

    @staticmethod
    def latest_open_plan(postgres_url: str, final_stages: tuple[str, ...]) -> str | None:
        """The most recently updated plan that is neither finished nor aborted."""
        with pg_connect(postgres_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT plan_id FROM runeshift.cutover_state WHERE stage <> ALL(%s) "
                "ORDER BY updated_at DESC LIMIT 1",
                ([*final_stages, ABORTED],),
            ).fetchone()
        return None if row is None else str(row[0])

    def exists(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM runeshift.cutover_state WHERE plan_id = %s", (self.plan_id,)
        ).fetchone()
        return row is not None

    def lock(self) -> None:
        """Take the plan's advisory lock for this connection's life, or refuse."""
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, self.plan_id)
        ).fetchone()
        if not row or not row[0]:
            raise ConfigError(
                f"another runeshift process is driving cutover plan {self.plan_id!r}; "
                "wait for it to finish (or stop it) and run the command again"
            )
        self._locked = True

    def stage(self) -> str:
        row = self._conn.execute(
            "SELECT stage FROM runeshift.cutover_state WHERE plan_id = %s", (self.plan_id,)
        ).fetchone()
        if row is None:
            raise ConfigError(
                f"no cutover plan {self.plan_id!r}; create one with 'runeshift cutover plan'"
            )
        return str(row[0])

    def set_stage(self, stage: str) -> None:
        with self._conn.transaction():
            self._conn.execute(
                "UPDATE runeshift.cutover_state SET stage = %s, updated_at = now() "
                "WHERE plan_id = %s",
                (stage, self.plan_id),
            )

    def options(self) -> dict[str, Any]:
        row = self._conn.execute(
            "SELECT detail FROM runeshift.cutover_journal WHERE plan_id = %s AND step = %s "
            "ORDER BY id LIMIT 1",
            (self.plan_id, PLAN_STEP),
        ).fetchone()
        if row is None:
            raise FatalError(f"cutover plan {self.plan_id!r} has no plan entry in its journal")
        return dict(row[0])

    def record(
        self,
        stage: str,
        step: str,
        action: Action,
        status: Status,
        detail: dict[str, Any] | None = None,
    ) -> JournalEntry:
        """Append one entry, committed before this returns."""
        with self._conn.transaction():
            return self._insert(stage, step, action, status, detail or {})

    def _insert(
        self, stage: str, step: str, action: Action, status: Status, detail: dict[str, Any]
    ) -> JournalEntry:
        # Round-trip through JSON so datetimes and other values are stored as text.
        clean = json.loads(json.dumps(detail, default=str))
        row = self._conn.execute(
            "INSERT INTO runeshift.cutover_journal (plan_id, stage, step, action, status, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, at",
            (self.plan_id, stage, step, action, status, Jsonb(clean)),
        ).fetchone()
        assert row is not None
        self._conn.execute(
            "UPDATE runeshift.cutover_state SET updated_at = now() WHERE plan_id = %s",
            (self.plan_id,),
        )
        return JournalEntry(int(row[0]), stage, step, action, status, clean, row[1])

    def entries(self) -> list[JournalEntry]:
        rows = self._conn.execute(
            "SELECT id, stage, step, action, status, detail, at FROM runeshift.cutover_journal "
            "WHERE plan_id = %s ORDER BY id",
            (self.plan_id,),
        ).fetchall()
        return [JournalEntry(int(r[0]), r[1], r[2], r[3], r[4], dict(r[5]), r[6]) for r in rows]

    def applied_steps(self) -> list[tuple[str, str]]:
        """(stage, step) of every step currently applied, in the order they were first applied.

        A reversal that did not finish (started, or failed) leaves its step applied: the
        step's own failure path restored it (a rollback from soak that fails verification
        resumes the soak), so the next rollback must reverse it again, verification included.
        """
        latest: dict[tuple[str, str], JournalEntry] = {}
        first: dict[tuple[str, str], int] = {}
        for entry in self.entries():
            if entry.is_gate or entry.step == PLAN_STEP:
                continue
            key = (entry.stage, entry.step)
            latest[key] = entry
            if entry.action == "reverse" and entry.status == "done":
                first.pop(key, None)
            elif entry.action == "apply":
                first.setdefault(key, entry.id)
        applied = [
            key
            for key, entry in latest.items()
            if (entry.action == "apply" and entry.status in ("started", "done"))
            or (entry.action == "reverse" and entry.status != "done" and key in first)
        ]
        return sorted(applied, key=lambda key: first[key])

    def step_done(self, stage: str, step: str) -> bool:
        """True when the step's latest entry is a finished apply."""
        row = self._conn.execute(
            "SELECT action, status FROM runeshift.cutover_journal WHERE plan_id = %s "
            "AND stage = %s AND step = %s ORDER BY id DESC LIMIT 1",
            (self.plan_id, stage, step),
        ).fetchone()
        return row is not None and row[0] == "apply" and row[1] == "done"

    def latest_detail(self, step: str) -> dict[str, Any] | None:
        """The detail of the step's latest finished apply (what it measured or marked)."""
        row = self._conn.execute(
            "SELECT detail FROM runeshift.cutover_journal WHERE plan_id = %s AND step = %s "
            "AND action = 'apply' AND status = 'done' ORDER BY id DESC LIMIT 1",
            (self.plan_id, step),
        ).fetchone()
        return None if row is None else dict(row[0])
