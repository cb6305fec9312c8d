"""The write fence: holds, forwards or admits a service's writes, so a cutover never fails one.

Design note. The fence tracks one mode for writes (``open``, ``hold``, ``forward``) and one
for reads (``open``, ``drain``), plus how many writes are running here (``in_flight``), how
many are waiting (``held``), how many went to the other service (``forwarding``) and
lifetime counters. Every write request calls :meth:`WriteFence.admit` before touching the
database; admission and the ``in_flight`` increment happen under one lock, so once
``set("hold")`` returns, no new write can start here, and ``in_flight`` only falls. The
cutover therefore holds writes, waits for ``in_flight == 0`` (``drain_timeout``), lets the
catch-up carry the last legacy writes to Postgres, verifies, then sets ``forward`` (legacy)
or ``open`` (Rune): each held request wakes up and goes where the new mode says. A held
write waits at most ``budget_s``; past it the request is answered 503 *without* being
applied (never acknowledged, so never a lost write), and counted in ``expired``.

Reads are never held. ``reads = drain`` only makes ``/ready`` answer 503 so the proxy's
health check takes the service out of rotation; reads that still arrive are served.

The state lives in memory: a restarted service comes back ``open``. That is deliberate —
a crashed service has no in-flight writes, and the cutover re-applies its fence on resume.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from runeshift.errors import ConfigError

WritesMode = Literal["open", "hold", "forward"]
ReadsMode = Literal["open", "drain"]
WRITES_MODES: tuple[WritesMode, ...] = ("open", "hold", "forward")
READS_MODES: tuple[ReadsMode, ...] = ("open", "drain")
DEFAULT_BUDGET_S = 30.0


class FenceExpired(Exception):
    """A held write waited longer than the budget; it was not applied."""


@dataclass(frozen=True)
class FenceStatus:
    """``GET /admin/fence``."""

    writes: WritesMode
    reads: ReadsMode
    forward_to: str | None
    budget_s: float
    in_flight: int
    held: int
    forwarding: int
    admitted_total: int
    held_total: int
    forwarded_total: int
    expired_total: int
    drained: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FenceStatus:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Admission:
    """Where an admitted write goes: ``local`` (apply here) or ``forward`` to ``forward_to``."""

    route: Literal["local", "forward"]
    forward_to: str | None = None


def parse_writes_mode(value: Any) -> WritesMode:
    for mode in WRITES_MODES:
        if value == mode:
            return mode
    raise ConfigError(f"fence 'writes' must be one of {', '.join(WRITES_MODES)}, got {value!r}")


def parse_reads_mode(value: Any) -> ReadsMode:
    for mode in READS_MODES:
        if value == mode:
            return mode
    raise ConfigError(f"fence 'reads' must be one of {', '.join(READS_MODES)}, got {value!r}")


class WriteFence:
    """Thread-safe gate in front of a service's writes; see the module note."""

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S) -> None:
        self._cond = threading.Condition()
        self._writes: WritesMode = "open"
        self._reads: ReadsMode = "open"
        self._forward_to: str | None = None
        self._budget_s = budget_s
        self._in_flight = 0
        self._held = 0
        self._forwarding = 0
        self._admitted_total = 0
        self._held_total = 0
        self._forwarded_total = 0
        self._expired_total = 0

    @property
    def reads_open(self) -> bool:
        with self._cond:
            return self._reads == "open"

    def set(
        self,
        *,
        writes: WritesMode | None = None,
        reads: ReadsMode | None = None,
        forward_to: str | None = None,
        budget_s: float | None = None,
    ) -> FenceStatus:
        """Change modes; ``forward`` needs ``forward_to`` (given now or earlier)."""
        with self._cond:
            target = forward_to or self._forward_to
            if writes == "forward" and not target:
                raise ConfigError(
                    "fence 'forward' needs 'forward_to': the URL of the service to send writes to"
                )
            if budget_s is not None:
                if budget_s <= 0:
                    raise ConfigError(f"fence 'budget_s' must be positive, got {budget_s}")
                self._budget_s = budget_s
            if forward_to:
                self._forward_to = forward_to.rstrip("/")
            if writes is not None:
                self._writes = writes
            if reads is not None:
                self._reads = reads
            self._cond.notify_all()
            return self._status()

    def status(self) -> FenceStatus:
        with self._cond:
            return self._status()

    def wait_drained(self, timeout: float) -> FenceStatus:
        """Wait until no write is running here (``in_flight == 0``) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._status()

    @contextmanager
    def admit(self) -> Iterator[Admission]:
        """Admit one write: waits while held, then yields where it goes; counts it in flight."""
        admission = self._enter()
        try:
            yield admission
        finally:
            with self._cond:
                if admission.route == "local":
                    self._in_flight -= 1
                else:
                    self._forwarding -= 1
                self._cond.notify_all()

    def _enter(self) -> Admission:
        with self._cond:
            if self._writes == "hold":
                self._held += 1
                self._held_total += 1
                deadline = time.monotonic() + self._budget_s
                try:
                    while self._writes == "hold":
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self._expired_total += 1
                            raise FenceExpired(
                                f"write held for {self._budget_s:.1f}s (the fence budget) and "
                                f"not applied; retry it"
                            )
                        self._cond.wait(left)
                finally:
                    self._held -= 1
            if self._writes == "forward":
                self._forwarding += 1
                self._forwarded_total += 1
                return Admission("forward", self._forward_to)
            self._in_flight += 1
            self._admitted_total += 1
            return Admission("local")

    def _status(self) -> FenceStatus:
        return FenceStatus(
            writes=self._writes,
            reads=self._reads,
            forward_to=self._forward_to,
            budget_s=self._budget_s,
            in_flight=self._in_flight,
            held=self._held,
            forwarding=self._forwarding,
            admitted_total=self._admitted_total,
            held_total=self._held_total,
            forwarded_total=self._forwarded_total,
            expired_total=self._expired_total,
            drained=self._in_flight == 0,
        )
