"""The cutover steps: one class each, with ``apply()``, ``reverse()`` and ``describe()``.

Every step is idempotent in both directions: applying an applied step, or reversing a
reversed one, changes nothing. That is what lets the runner resume after a crash by
re-applying the step that was running (the journal says ``started`` without ``done``), and
roll back a half-applied stage by reversing what it applied. ``apply`` returns what it
measured or marked; the runner journals it, and later steps read it through the context.

``point_of_no_return`` marks the step after which legacy no longer has every write: once
Rune's writes are open, going back needs reverse replication (Vitess: "you will not be
able to rollback once you have switched write traffic" without it).

``release()`` (optional) is called when the runner leaves the step's stage, applied or
not: a step closes there what it kept open for the later steps of its stage.

``writes_held_after`` (optional, default false) marks a step that leaves writes held: the
runner then skips the health check between it and the next step of its stage, so held
writes do not wait for /ready round trips (it checks before the hold and after the open).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import psycopg

from cutover.service_controls import TrafficProxy, WriteFence
from cutover.warm_connections import MySQLConnections
from cutover.window_verifier import WindowVerifier
from reconcile.settle_window import BinlogPoint, wait_until_applied
from runeshift.connections import pg_connect
from runeshift.errors import FatalError, TransientError


class StepContext(Protocol):
    def latest_detail(self, step: str) -> dict[str, Any] | None: ...


class Step(Protocol):
    name: str
    point_of_no_return: bool

    def describe(self) -> str: ...

    def apply(self, ctx: StepContext) -> dict[str, Any]: ...

    def reverse(self, ctx: StepContext) -> dict[str, Any]: ...


class MarkVerificationWindow:
    """Marks where the last full verification starts; the write switch verifies from here."""

    name = "mark_verification_window"
    point_of_no_return = False

    def __init__(self, verifier: WindowVerifier) -> None:
        self._verifier = verifier

    def describe(self) -> str:
        return "record the legacy clock: rows legacy writes after it are verified at the switch"

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        earlier = ctx.latest_detail(self.name)
        if earlier and earlier.get("since"):
            return earlier  # the earliest mark covers more; keep it
        return {"since": self._verifier.mark()}

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        return {}


class ShiftReads:
    """The proxy sends new reads to Rune (reverse: back to legacy)."""

    name = "shift_reads"
    point_of_no_return = False

    def __init__(self, proxy: TrafficProxy) -> None:
        self._proxy = proxy

    def describe(self) -> str:
        return "proxy: route reads to rune (requests in flight finish on legacy)"

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        routes = self._proxy.route_reads("rune")
        return {"reads": routes.reads, "writes": routes.writes}

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        routes = self._proxy.route_reads("legacy")
        return {"reads": routes.reads, "writes": routes.writes}


class HoldWrites:
    """Both fences hold new writes; waits until the writes running on legacy have finished."""

    name = "hold_writes"
    point_of_no_return = False
    writes_held_after = True

    def __init__(
        self,
        legacy_fence: WriteFence,
        rune_fence: WriteFence,
        legacy_url: str,
        *,
        drain_timeout_s: float,
    ) -> None:
        self._legacy = legacy_fence
        self._rune = rune_fence
        self._legacy_url = legacy_url
        self._drain_timeout_s = drain_timeout_s

    def describe(self) -> str:
        return (
            "fences: hold new writes on rune and legacy (held, not failed); wait up to "
            f"{self._drain_timeout_s:.0f} s for legacy's writes in flight to finish"
        )

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        self._rune.hold()
        status = self._legacy.hold(drain_timeout=self._drain_timeout_s)
        if not status.drained:
            raise TransientError(
                f"legacy still has {status.in_flight} write(s) in flight after "
                f"{self._drain_timeout_s:.0f} s; the stage is undone (writes released to legacy)"
            )
        return {"legacy_held": status.held, "in_flight": status.in_flight}

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        legacy = self._legacy.open()
        # A write that still reaches Rune (sent before the route moved back) goes to legacy.
        rune = self._rune.forward(self._legacy_url)
        return {"legacy_writes": legacy.writes, "rune_writes": rune.writes}


class DrainCatchUp:
    """Waits until the follower has applied every legacy transaction committed before the hold."""

    name = "drain_catch_up"
    point_of_no_return = False
    writes_held_after = True

    def __init__(
        self,
        sources: dict[str, str],
        postgres_url: str,
        legacy_fence: WriteFence,
        *,
        timeout_s: float,
        poll_s: float = 0.01,
        connections: MySQLConnections | None = None,
    ) -> None:
        self._sources = sources
        # Opened by the first wait (before the hold), reused while writes are held.
        self._conns = connections or MySQLConnections()
        self._pg_url = postgres_url
        self._legacy = legacy_fence
        self._timeout_s = timeout_s
        self._poll_s = poll_s

    def describe(self) -> str:
        return (
            "read each legacy binlog's end position (writes are held), wait up to "
            f"{self._timeout_s:.0f} s until the catch-up has applied it"
        )

    def _binlog_end(self, url: str) -> dict[str, Any]:
        with self._conns.connection(url) as conn, conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        if row is None:
            raise FatalError("SHOW MASTER STATUS returned nothing: the source has no binlog")
        return {"file": str(row[0]), "position": int(row[1])}

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        # A legacy service restarted since the hold comes back open: hold it again first.
        status = self._legacy.status()
        if status.writes != "hold":
            self._legacy.hold(drain_timeout=self._timeout_s)
        return self.wait_applied()

    def wait_applied(self) -> dict[str, Any]:
        """Wait until the follower has applied each source's binlog as it ends now."""
        started = time.monotonic()
        self._conns.keep_open()
        waited: dict[str, Any] = {}
        ends = {source: self._binlog_end(url) for source, url in sorted(self._sources.items())}
        conn: psycopg.Connection[Any] = pg_connect(self._pg_url, autocommit=True)
        try:
            for source, end in ends.items():
                point = BinlogPoint.parse(end)
                assert point is not None
                outcome = wait_until_applied(
                    conn,
                    source,
                    point,
                    timeout=max(0.0, self._timeout_s - (time.monotonic() - started)),
                    poll=self._poll_s,
                )
                if not outcome.passed:
                    raise TransientError(
                        f"the catch-up did not apply {source} up to {end['file']}:"
                        f"{end['position']} within {self._timeout_s:.0f} s (it is at "
                        f"{outcome.follower_at}); is 'runeshift sync' running?"
                    )
                waited[source] = {**end, "waited_s": round(outcome.waited_seconds, 4)}
        finally:
            conn.close()
        return {"positions": waited, "seconds": round(time.monotonic() - started, 4)}

    def release(self) -> None:
        """Close the connections kept open for the stage (the runner calls it on leaving)."""
        self._conns.release()

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        return {}


class PreVerifyWindow:
    """Before the hold: verifies the window up to a safe mark, so the pause verifies little.

    Ghostferry re-verifies changed rows before the cutover and again during it; this does
    the same with a mark no running write can be older than (``safe_mark``). It waits for
    the catch-up to pass the binlog end first, so every row before the mark has arrived.
    """

    name = "pre_verify_window"
    point_of_no_return = False

    def __init__(self, verifier: WindowVerifier, catch_up: DrainCatchUp) -> None:
        self._verifier = verifier
        self._catch_up = catch_up

    def describe(self) -> str:
        return (
            "before holding: catch up and verify the rows written since the verification "
            "mark, so only the newest rows are verified while writes are held"
        )

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        mark = ctx.latest_detail(MarkVerificationWindow.name)
        if not mark or not mark.get("since"):
            raise FatalError(
                "no verification mark in the journal: the plan skipped 'caught_up'; "
                "roll back and advance again"
            )
        until = self._verifier.safe_mark()
        caught_up = self._catch_up.wait_applied()
        result = self._verifier.verify(str(mark["since"]), until)
        if not result.clean:
            raise FatalError(
                f"{len(result.mismatched)} row(s) written since the verification mark differ, "
                f"e.g. {result.mismatched[0]}; writes stay on legacy"
            )
        return {**result.as_json(), "since": until, "caught_up": caught_up}

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        return {}


class VerifyWindow:
    """Verifies every row legacy wrote since the verification mark is in Rune, unchanged."""

    name = "verify_window"
    point_of_no_return = False
    writes_held_after = True

    def __init__(self, verifier: WindowVerifier) -> None:
        self._verifier = verifier

    def describe(self) -> str:
        return "compare every license legacy wrote since the verification mark with rune.licenses"

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        mark = ctx.latest_detail(PreVerifyWindow.name) or ctx.latest_detail(
            MarkVerificationWindow.name
        )
        if not mark or not mark.get("since"):
            raise FatalError(
                "no verification mark in the journal: the plan skipped 'caught_up'; "
                "roll back and advance again"
            )
        result = self._verifier.verify(str(mark["since"]))
        if not result.clean:
            raise FatalError(
                f"{len(result.mismatched)} row(s) written in the window differ, e.g. "
                f"{result.mismatched[0]}; the stage is undone (writes released to legacy)"
            )
        return result.as_json()

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        return {}


class SwitchWriteRoute:
    """The proxy sends new writes to Rune (still held there); legacy forwards what it holds."""

    name = "switch_write_route"
    point_of_no_return = False
    writes_held_after = True

    def __init__(
        self,
        proxy: TrafficProxy,
        legacy_fence: WriteFence,
        rune_fence: WriteFence,
        rune_url: str,
        legacy_url: str,
    ) -> None:
        self._proxy = proxy
        self._legacy = legacy_fence
        self._rune = rune_fence
        self._rune_url = rune_url
        self._legacy_url = legacy_url

    def describe(self) -> str:
        return (
            "proxy: route writes to rune (held there); legacy fence: forward held and late "
            f"writes to {self._rune_url}"
        )

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        if self._rune.status().writes != "hold":  # a restarted Rune service comes back open
            self._rune.hold()
        routes = self._proxy.route_writes("rune")
        legacy = self._legacy.forward(self._rune_url)
        return {"writes": routes.writes, "legacy_fence": legacy.writes}

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        # Nothing was applied on Rune yet (its fence holds): send its held writes to legacy.
        routes = self._proxy.route_writes("legacy")
        self._legacy.hold()
        self._rune.forward(self._legacy_url)
        return {"writes": routes.writes}


class OpenRuneWrites:
    """Rune applies writes: the held ones first. From here legacy misses Rune's writes."""

    name = "open_rune_writes"
    point_of_no_return = True

    def __init__(self, rune_fence: WriteFence) -> None:
        self._rune = rune_fence

    def describe(self) -> str:
        return "rune fence: open (held writes apply on Rune); the point of no return"

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        status = self._rune.open()
        return {"rune_writes": status.writes}

    def reverse(self, ctx: StepContext) -> dict[str, Any]:
        # Only reached with reverse replication (the runner refuses otherwise).
        status = self._rune.hold()
        return {"rune_writes": status.writes}
