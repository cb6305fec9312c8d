"""The lost-write check: every write a service acknowledged must be in the final database.

An acknowledged write carries the id its license row has (or will have, after the catch-up)
in ``rune.licenses``: ``uuid5('rune_license:<request id>')`` for writes Rune applied,
``uuid5('license:<legacy id>')`` for the stand-in's. After the cutover (the catch-up drained)
each must be there; the ones that are not are lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from runeshift.connections import pg_connect
from services.load.load_generator import AckedWrite

_BATCH = 5000


def find_lost_writes(postgres_url: str, acknowledged: Sequence[AckedWrite]) -> list[AckedWrite]:
    """The acknowledged writes whose license row is not in ``rune.licenses``."""
    present: set[str] = set()
    with pg_connect(postgres_url, autocommit=True) as conn:
        for start in range(0, len(acknowledged), _BATCH):
            ids = [w.license_id for w in acknowledged[start : start + _BATCH]]
            rows = conn.execute(
                "SELECT id::text FROM rune.licenses WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchall()
            present.update(r[0] for r in rows)
    return [w for w in acknowledged if w.license_id not in present]
