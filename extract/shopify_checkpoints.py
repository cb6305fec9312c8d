"""Where each Shopify stream's extraction stands, so a killed run resumes instead of restarting.

Design note: one ``StreamPosition`` per stream, stored in ``runeshift.source_positions``
under ``source = 'shopify:<stream>'`` and ``kind = 'shopify_cursor'`` (the table's
key is ``source``). While a bulk export is in flight the position has
``phase = 'bulk'`` and names the bulk operation id (so a restarted process polls
*that* operation instead of starting a second one, which Shopify would refuse
anyway) and how many records of its result were already handed over. Once the
export is handed over it becomes ``phase = 'incremental'`` with the
``updated_at`` high-water mark the catch-up starts from (minus its lookback).

Callers: ``run_bulk_export`` and ``run_incremental``. Each ``save`` is its own
committed transaction, written only after the records it covers were handed
over, so after ``kill -9`` a resumed run repeats at most the last batch
(at-least-once; the loader upserts idempotently). A position written by a newer
format is refused, not guessed at.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol

import psycopg

from runeshift.errors import ConfigError, FatalError

POSITION_FORMAT = 1
POSITION_KIND = "shopify_cursor"
Phase = Literal["bulk", "incremental"]


@dataclass(frozen=True)
class StreamPosition:
    """A stream's resumable position (versioned JSON in ``source_positions.position``)."""

    phase: Phase
    bulk_operation_id: str | None = None
    bulk_created_at: str | None = None
    handed_over: int = 0
    since: str | None = None
    window_end: str | None = None
    cursor: str | None = None
    format: int = POSITION_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, source: str, data: dict[str, Any]) -> StreamPosition:
        version = data.get("format")
        if version != POSITION_FORMAT:
            raise FatalError(
                f"checkpoint {source} has format {version!r}, this runeshift reads format "
                f"{POSITION_FORMAT}; finish the run with the version that wrote it or "
                "delete the row to start the stream over"
            )
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def kind(self) -> str:
        # The control schema's check constraint (0001_control) knows 'shopify_cursor'
        # only; the phase is in the position itself.
        return POSITION_KIND

    def advanced(self, **changes: Any) -> StreamPosition:
        return replace(self, **changes)


class CheckpointStore(Protocol):
    """Reads and writes stream positions; implemented on Postgres and in memory."""

    def load(self, stream: str) -> StreamPosition | None: ...

    def save(self, stream: str, position: StreamPosition) -> None: ...

    def clear(self, stream: str) -> None: ...


def source_name(stream: str) -> str:
    return f"shopify:{stream}"


class ShopifyCheckpointStore:
    """``CheckpointStore`` on ``runeshift.source_positions`` in the control schema."""

    def __init__(self, postgres_url: str) -> None:
        if not postgres_url:
            raise ConfigError(
                "setting 'postgres_url' is not set; Shopify checkpoints live in the "
                "control schema, set RUNESHIFT_POSTGRES_URL"
            )
        self._url = postgres_url

    def load(self, stream: str) -> StreamPosition | None:
        source = source_name(stream)
        with self._connect() as conn:
            row = conn.execute(
                "SELECT position FROM runeshift.source_positions WHERE source = %s", (source,)
            ).fetchone()
        if row is None:
            return None
        data = row[0] if isinstance(row[0], dict) else json.loads(row[0])
        return StreamPosition.from_json(source, data)

    def save(self, stream: str, position: StreamPosition) -> None:
        recorded_by = "backfill" if position.phase == "bulk" else "sync"
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO runeshift.source_positions (source, kind, position, recorded_by) "
                "VALUES (%s, %s, %s::jsonb, %s) "
                "ON CONFLICT (source) DO UPDATE SET kind = EXCLUDED.kind, "
                "position = EXCLUDED.position, recorded_by = EXCLUDED.recorded_by, "
                "updated_at = now()",
                (source_name(stream), position.kind, json.dumps(position.to_json()), recorded_by),
            )

    def clear(self, stream: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "DELETE FROM runeshift.source_positions WHERE source = %s", (source_name(stream),)
            )

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise ConfigError(
                f"cannot reach the control database for Shopify checkpoints ({exc}); "
                "check RUNESHIFT_POSTGRES_URL"
            ) from exc


class InMemoryCheckpointStore:
    """``CheckpointStore`` for one process (pure tests, dry runs); forgets on exit."""

    def __init__(self) -> None:
        self.positions: dict[str, StreamPosition] = {}
        self.history: list[tuple[str, StreamPosition]] = []

    def load(self, stream: str) -> StreamPosition | None:
        return self.positions.get(stream)

    def save(self, stream: str, position: StreamPosition) -> None:
        self.positions[stream] = position
        self.history.append((stream, position))

    def clear(self, stream: str) -> None:
        self.positions.pop(stream, None)
