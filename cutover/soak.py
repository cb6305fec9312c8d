"""The soak stage (issue 8): writes on Rune, reverse replication carrying them to legacy.

Design note. With ``PlanOptions.soak`` the standard stages gain three things
(:func:`with_soak`):

* in ``writes_on_rune``, ``prepare_reverse_replication`` just before ``open_rune_writes``:
  legacy writes are held and the forward catch-up has drained, so the slot starts exactly
  at Rune's first write (reverse: drop the slot, which the rollback reaches only after the
  reverse stream has drained);
* a ``soak`` stage between ``writes_on_rune`` and ``complete`` whose step
  ``start_reverse_follower`` starts the reverse follower in this process (one per target
  database, kept in a module registry so any runner of the process finds it) and waits
  until its lag is under the plan's threshold (the soak's gate, checked inside the step
  because the follower only exists once the stage is entered);
* in ``complete``, ``stop_reverse_replication`` and ``archive_legacy`` (below).

Rolling back from ``soak`` reverses ``start_reverse_follower`` first: verify legacy
against Rune in full while writes still flow, hold writes on both fences, drain the reverse
stream, verify again under the hold, and only then do the writes stage's own reversals run
(Rune fence held, slot dropped, writes routed back to legacy and the legacy fence opened;
the slot's reversal also drops the key sequence, so Rune's later rows carry no legacy key).
:class:`SoakReverseReplication` tells the runner rollback past ``open_rune_writes`` is
allowed once the slot is prepared.

Verification (``verify_reverse``) fails on a difference, on any row the reverse follower
quarantined in this stream that no named rule accepts, and on any Rune row of a reversible
table without its legacy key: a rollback never silently drops one. The rollback refuses
before holding anything when rows are already quarantined; if verification fails after
the drain, the soak is resumed (Rune fence open, legacy forwarding, the follower running
again) and the rollback fails with the reason; the journal keeps the plan at ``soak``.

The held verification is bounded by the rows that changed, not by the tables (issue 8: a
full reverse reconcile held writes 1.45 s at 200 requests/s, ~20 s at 1M licenses). When
the follower runs in this process it starts recording the legacy keys it writes
(``ReverseFollower.track``) and each legacy database's binlog position is marked
(``LegacyBinlogMark.take``: ``SHOW MASTER STATUS``); then the full verification runs live.
Under the hold, after the drain, the keys compared are: those the follower wrote since,
those the live pass found differing, those of every row event in the legacy binlogs
from the mark to their current end on a table feeding a verified Rune table
(``LegacyBinlogMark.writes_since``, read with the catch-up's own ``BinlogReader``, so
bounded by the writes since the live pass; step detail ``legacy_binlog``), and the dedup
losers of the live pass and of the held pass's own plan (below). A row none of
those name was equal on both sides in the live pass and neither side changed it since:
every Rune change reaches the follower, and every legacy change, through the stand-in or
behind the fence (a cron job, an admin), is in the binlog after the mark (the mark is taken
before the live pass opens its snapshot, and MariaDB's consistent snapshot shows every
transaction logged before its binlog position). So a real difference still fails: an
untouched one shows in the live pass and is rechecked under the hold (an in-flight row that
differed live passes once drained).

Dedup makes a row's expected values depend on other rows of its table: it is planned over
the whole table, so when the winner of a case-variant email pair moves to a new address the
other account may log in now (``accounts.can_login``), its own row untouched (likewise
``scripts.slug`` and ``roles.key``, where a loser's column itself is rewritten, so the
losers are taken from the source side's plan, not found by a group search in Rune). An
uncontested row always wins, so only a row that is a loser in one of the two
plans can have changed outcome: the live pass's losers (``TableResult.dedup_losers``, via
``ReverseVerification.dedup_losers``) are added to the keys, and the held pass, keyed,
compares the losers it plans in its own snapshot too (``ReconcileOptions.keyed_losers``:
one pass, so no loser can appear between planning and comparing). Both are bounded by the
contested rows, not by the table (step detail ``dedup_losers``, counts per table). A table
with no key under the hold is not planned there, but none of its source rows changed since
the live pass and it had no loser then, so it has none now.

The verification under the hold is full, as before, if the live pass listed as many
differences as a report keeps (``MAX_REPORTED_ROWS``), if no follower runs here
(``drain_reverse``: another process ran the soak), or if the binlogs could not be marked or
read to their end (``legacy_binlog.read`` false, with the reason). ``after_live_pass`` is a
test seam between the live pass and the hold.

Rows Rune creates during the soak carry legacy keys (decision 0007): ``prepare_reverse``
seeds ``runeshift.reverse_license_keys`` above legacy's ids, the Rune service takes each
new license's ``legacy_license_id`` from it, and the reverse follower inserts the row
into legacy under that key.

``complete`` after a soak (:func:`with_soak`) stops the reverse stream
(``stop_reverse_replication``: key allocation ends, the follower drains and stops, the
slot and publication are dropped) and archives the legacy world
(``archive_legacy``: ``runeshift/archive.py``, verified at once). Neither step can be
undone (legacy misses Rune's writes from then on), so rolling back from ``complete`` is
refused, and a failed step is resumed by advancing again rather than undone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cutover.service_controls import WriteFence
from cutover.stages import Stage, StageList
from cutover.steps import OpenRuneWrites, Step, StepContext
from runeshift.errors import FatalError, TransientError
from runeshift.settings import Settings

if TYPE_CHECKING:
    from runeshift.reverse_sync import ReverseVerification

SOAK = "soak"

STORE_LIMITATION = (
    "limitation: Rune's store writes (rune.orders, rune.order_items: Shopify-side) are "
    "one-way; a rollback from soak leaves them in Rune only (the licenses they grant do "
    "reach legacy)"
)
COMPLETE_REFUSAL = (
    "the reverse stream is stopped and legacy archived at 'complete': legacy misses Rune's "
    "writes from then on, so rolling back is refused"
)

_followers: dict[str, Any] = {}
_lock = threading.Lock()


def running_follower(settings: Settings) -> Any | None:
    """The reverse follower this process runs for the target, if any."""
    with _lock:
        follower = _followers.get(settings.require("postgres_url"))
    return follower if follower is not None and follower.running else None


def stop_follower(
    settings: Settings, timeout_s: float = 60.0, *, until_lsn: int | None = None
) -> bool:
    """Drain (up to ``until_lsn``) and stop this process's follower; False if none ran."""
    with _lock:
        follower = _followers.pop(settings.require("postgres_url"), None)
    if follower is None:
        return False
    follower.stop(timeout_s, until_lsn=until_lsn)
    return True


def limitations() -> list[str]:
    return [STORE_LIMITATION]


class SoakReverseReplication:
    """Rollback past the write switch is available once the reverse slot is prepared."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def unavailable_reason(self) -> str | None:
        from runeshift.reverse_sync import reverse_status

        try:
            prepared = reverse_status(self._settings).prepared
        except Exception as exc:
            return f"reverse replication state could not be read ({exc}); rollback refused"
        if prepared:
            return None
        return (
            "writes are open on Rune and reverse replication was not prepared at the write "
            "switch, so writes Rune accepted would be missing on legacy; rolling back is refused"
        )


class PrepareReverseReplication:
    """Creates the reverse slot while writes are held, just before Rune's writes open."""

    name = "prepare_reverse_replication"
    point_of_no_return = False
    writes_held_after = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def describe(self) -> str:
        return (
            "reverse replication: create the publication, the slot and legacy's reverse "
            "position (writes held, catch-up drained: the slot starts at Rune's first write)"
        )

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        from runeshift.reverse_sync import prepare_reverse

        prepared = prepare_reverse(self._settings)
        return {
            "slot": prepared.slot,
            "position": prepared.position,
            "tables": list(prepared.tables),
            "one_way_tables": list(prepared.one_way_tables),
        }

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        from runeshift.reverse_sync import finish_reverse

        stop_follower(self._settings)
        status = finish_reverse(self._settings)
        return {"dropped": True, "position": status.position}


class StartReverseFollower:
    """Soak: the reverse follower runs; reverse: verify, hold, drain, verify what changed."""

    name = "start_reverse_follower"
    point_of_no_return = False

    def __init__(
        self,
        settings: Settings,
        legacy_fence: WriteFence,
        rune_fence: WriteFence,
        rune_url: str,
        *,
        lag_threshold_s: float,
        timeout_s: float,
        drain_timeout_s: float,
    ) -> None:
        self._settings = settings
        self._legacy = legacy_fence
        self._rune = rune_fence
        self._rune_url = rune_url
        self._lag_threshold_s = lag_threshold_s
        self._timeout_s = timeout_s
        self._drain_timeout_s = drain_timeout_s
        # Test seam: called between the live verification and the hold (a test writes to
        # legacy behind the fence there); None in every real plan.
        self.after_live_pass: Callable[[], None] | None = None

    def describe(self) -> str:
        return (
            "start the reverse follower (Rune -> legacy) and wait up to "
            f"{self._timeout_s:.0f} s for its lag to be under {self._lag_threshold_s:.1f} s; "
            "rollback: verify legacy in full, hold writes, drain the reverse stream, verify "
            "the rows changed since on either side (the follower's writes, legacy's binlogs), "
            "those that differed and the dedup losers, then switch back"
        )

    def _ensure_running(self) -> Any:
        from runeshift.reverse_sync import ReverseFollower

        url = self._settings.require("postgres_url")
        with _lock:
            follower = _followers.get(url)
            if follower is None or not follower.running:
                follower = ReverseFollower(self._settings)
                follower.start()
                _followers[url] = follower
        return follower

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        from runeshift.reverse_sync import reverse_status

        follower = self._ensure_running()
        deadline = time.monotonic() + self._timeout_s
        while True:
            if follower.error is not None:
                raise FatalError(f"the reverse follower failed: {follower.error}")
            status = reverse_status(self._settings)
            lag = status.lag_seconds or 0.0
            if lag <= self._lag_threshold_s:
                return {
                    "lag_s": round(lag, 3),
                    "pending_transactions": status.pending_transactions,
                    "rows_quarantined": status.rows_quarantined,
                }
            if time.monotonic() > deadline:
                raise TransientError(
                    f"the reverse follower's lag is {lag:.1f} s after {self._timeout_s:.0f} s "
                    f"(threshold {self._lag_threshold_s:.1f} s)"
                )
            time.sleep(0.2)

    def _refuse_if_quarantined(self) -> None:
        from runeshift.reverse_sync import reverse_status

        status = reverse_status(self._settings)
        if status.rows_quarantined:
            first = status.recent_quarantine[0] if status.recent_quarantine else {}
            raise FatalError(
                f"{status.rows_quarantined} row(s) Rune wrote during the soak were quarantined "
                f"by the reverse follower (e.g. {first.get('target_table')} "
                f"{first.get('source_key')}: {first.get('reason')}), so legacy does not have "
                "them; rolling back would lose them. Writes stay on Rune; see "
                "'runeshift reverse status' and runbooks/rollback-from-soak.md"
            )

    def _resume_soak(self, *, restart_follower: bool) -> None:
        self._rune.open()
        self._legacy.forward(self._rune_url)
        if restart_follower:
            self._ensure_running()

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        from runeshift.reverse_sync import LegacyBinlogMark, drain_reverse, verify_reverse
        from transform.mapping_loader import load_mappings

        # Refuse before holding anything when rows are already known lost.
        self._refuse_if_quarantined()
        mappings = load_mappings()  # parsed before the hold: about 0.1 s of YAML
        follower = running_follower(self._settings)
        pre_verified: dict[str, Any] | None = None
        keys: dict[str, set[int]] | None = None
        mark: LegacyBinlogMark | None = None
        legacy_binlog: dict[str, Any] | None = None
        live_losers: dict[str, frozenset[int]] = {}
        if follower is not None:
            # Both before the live pass: the follower's writes from here are in touched(),
            # anyone else's legacy writes are in the binlogs after the mark.
            follower.track()
            try:
                mark = LegacyBinlogMark.take(self._settings, mappings)
            except Exception as exc:
                legacy_binlog = {"read": False, "reason": f"{exc}; verified in full when held"}
            began = time.monotonic()
            live = verify_reverse(self._settings, mappings=mappings)
            pre_verified = {"status": live.status, "seconds": round(time.monotonic() - began, 4)}
            keys = _differing_keys(live) if mark is not None else None
            if keys is not None:
                # A loser's dedup outcome changes when a rival's row does, its own row
                # untouched (the winner of a case-variant pair changes address: the other
                # may log in now), so the live pass's losers are compared under the hold;
                # the held pass compares the losers it plans itself.
                live_losers = live.dedup_losers()
                for table, losers in live_losers.items():
                    keys.setdefault(table, set()).update(losers)
        if self.after_live_pass is not None:
            self.after_live_pass()
        if keys is not None and mark is not None:
            try:  # what the binlogs hold already is read before the hold, not in it
                mark.read_ahead()
            except Exception as exc:
                keys = None
                legacy_binlog = {"read": False, "reason": f"{exc}; verified in full when held"}
        started = time.monotonic()
        self._rune.hold(drain_timeout=self._drain_timeout_s)
        self._legacy.hold(drain_timeout=self._drain_timeout_s)
        if follower is not None:
            # Stopping is the drain: the follower applies everything committed, then ends
            # (polling reverse_status until nothing was pending took 0.36 s of the hold).
            follower.stop(self._drain_timeout_s)
            if follower.running:
                raise FatalError(
                    f"the reverse stream did not drain in {self._drain_timeout_s:.0f}s; keep "
                    "writes held and see runbooks/incident-reverse-follower-stuck.md"
                )
            stop_follower(self._settings)
            result = follower.result
            drained: dict[str, Any] = {
                "via": "follower",
                "position": result.position if result is not None else None,
            }
            if keys is not None:
                for table, touched in follower.touched().items():
                    keys.setdefault(table, set()).update(touched)
            if keys is not None and mark is not None:
                # Writes to legacy behind the fence (a cron job, an admin) since the mark.
                try:
                    writes = mark.writes_since()
                except Exception as exc:
                    keys = None
                    legacy_binlog = {"read": False, "reason": f"{exc}; verified in full when held"}
                else:
                    for table, written in writes.keys.items():
                        keys.setdefault(table, set()).update(written)
                    legacy_binlog = {"read": True, **writes.summary()}
        else:
            drain = drain_reverse(self._settings, timeout_seconds=self._drain_timeout_s)
            drained = {"via": "drain_reverse", "position": drain.position}
        # Counts quarantined rows and Rune rows without a legacy key as failures too.
        verification = verify_reverse(
            self._settings,
            mappings=mappings,
            keys=None if keys is None else {t: sorted(k) for t, k in keys.items()},
        )
        if not verification.passed:
            self._resume_soak(restart_follower=follower is not None)
            raise FatalError(
                f"after draining, legacy does not have every Rune write "
                f"({'; '.join(verification.failures)}); writes are back on Rune (soak "
                "resumed). Inspect 'runeshift reverse status' and 'runeshift reverse verify', "
                "then run the rollback again"
            )
        held = round(time.monotonic() - started, 4)
        dedup_losers = {
            "live": {t: len(k) for t, k in sorted(live_losers.items())},
            "held": {t: len(k) for t, k in sorted(verification.dedup_losers().items())},
        }
        return {
            **drained,
            "pre_verified": pre_verified,  # None: no follower here, so verified in full held
            "verified": verification.status,
            "verified_keys": None if keys is None else {t: len(k) for t, k in sorted(keys.items())},
            # Dedup losers of the live pass (in verified_keys) and of the held pass's plan.
            "dedup_losers": None if keys is None else dedup_losers,
            # The legacy binlogs read from the mark (or why not, and so verified in full).
            "legacy_binlog": legacy_binlog,
            "totals": verification.totals(),
            # Writes held; the journal records the whole step (the live pass too) as seconds.
            "seconds": held,
            "held_s": held,
        }


def _differing_keys(verification: ReverseVerification) -> dict[str, set[int]] | None:
    """Per table, the keys found differing; None if a table's list may have been cut short."""
    from reconcile.reconcile_run import MAX_REPORTED_ROWS

    keys: dict[str, set[int]] = {}
    for table in verification.tables:
        if len(table.differences) >= MAX_REPORTED_ROWS:
            return None
        keys[table.target] = {d.source_key for d in table.differences}
    return keys


class StopReverseReplication:
    """Complete: end key allocation, drain and stop the follower, drop the slot."""

    name = "stop_reverse_replication"
    point_of_no_return = True

    def __init__(self, settings: Settings, *, drain_timeout_s: float) -> None:
        self._settings = settings
        self._drain_timeout_s = drain_timeout_s

    def describe(self) -> str:
        return (
            "reverse replication: stop allocating legacy keys, drain and stop the reverse "
            "follower, drop the slot and publication (legacy gets no write from here)"
        )

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        from runeshift.reverse_sync import (
            ReverseOptions,
            end_key_allocation,
            finish_reverse,
            reverse_status,
            run_reverse,
        )

        # Keys first: every keyed row is committed by ``end``, so draining up to it brings
        # them all to legacy, and Rune's later rows (no key, Rune only) are not quarantined.
        if reverse_status(self._settings).prepared:
            end = end_key_allocation(self._settings)
            if not stop_follower(self._settings, self._drain_timeout_s, until_lsn=end):
                run_reverse(
                    self._settings,
                    ReverseOptions(until_lsn=end, lock_wait_seconds=self._drain_timeout_s),
                )
        status = finish_reverse(self._settings)
        return {
            "position": status.position,
            "transactions_applied": status.transactions_applied,
            "rows_quarantined": status.rows_quarantined,
        }

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        raise FatalError(COMPLETE_REFUSAL)


class ArchiveLegacy:
    """Complete: archive the legacy world (Parquet + manifest) and verify the archive."""

    name = "archive_legacy"
    point_of_no_return = False

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def describe(self) -> str:
        return (
            "archive every legacy table (secrets omitted) to the staging store and verify "
            "the archive against its manifest"
        )

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        from runeshift.archive import create_archive, verify_archive

        archive = create_archive(self._settings)
        checked = verify_archive(
            archive.location, archive.archive_id, endpoint_url=self._settings.s3_endpoint_url
        )
        if not checked.ok:
            raise FatalError(
                f"the archive {archive.archive_id} does not verify: {checked.problems[0]}; "
                "advance again to rewrite it"
            )
        return {
            "archive_id": archive.archive_id,
            "location": archive.location,
            "manifest_sha256": archive.manifest_sha256,
            "tables": len(archive.tables),
            "rows": sum(t.rows for t in archive.tables),
        }

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        return {}  # an archive is kept


def with_soak(
    stages: StageList,
    settings: Settings,
    legacy_fence: WriteFence,
    rune_fence: WriteFence,
    rune_url: str,
    *,
    lag_threshold_s: float,
    timeout_s: float,
    drain_timeout_s: float,
) -> StageList:
    """The stages with reverse replication prepared at the switch and a soak before complete."""
    out: list[Stage] = []
    for stage in stages:
        if stage.name == "writes_on_rune":
            steps: list[Step] = []
            for step in stage.steps:
                if step.name == OpenRuneWrites.name:
                    steps.append(PrepareReverseReplication(settings))
                steps.append(step)
            stage = Stage(
                stage.name,
                stage.summary,
                gates=stage.gates,
                steps=tuple(steps),
                rollback_refusal=stage.rollback_refusal,
                undo_on_failure=stage.undo_on_failure,
            )
        if stage.name == "complete":
            out.append(
                Stage(
                    SOAK,
                    "writes on Rune, reverse replication carries them to legacy (new "
                    "licenses get legacy keys, decision 0007); " + STORE_LIMITATION,
                    steps=(
                        StartReverseFollower(
                            settings,
                            legacy_fence,
                            rune_fence,
                            rune_url,
                            lag_threshold_s=lag_threshold_s,
                            timeout_s=timeout_s,
                            drain_timeout_s=drain_timeout_s,
                        ),
                    ),
                )
            )
            stage = Stage(
                stage.name,
                stage.summary + "; the reverse stream is stopped and legacy archived",
                gates=stage.gates,
                steps=(
                    *stage.steps,
                    StopReverseReplication(settings, drain_timeout_s=drain_timeout_s),
                    ArchiveLegacy(settings),
                ),
                rollback_refusal=COMPLETE_REFUSAL,
                undo_on_failure=False,
            )
        out.append(stage)
    return StageList(out)
