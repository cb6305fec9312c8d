"""A steady-rate HTTP load with a realistic read/write mix, recording every outcome.

Design note. Open loop: request ``i`` is scheduled at ``start + i / rate`` whatever the
earlier ones are doing, so a slow or held request (a write waiting at the fence) does not
slow the offered load, the way real users do not wait for each other. A pool of worker
threads sends them (``workers`` bounds how many can be outstanding; while all are busy the
schedule slips, visible as ``achieved_rate`` below ``rate``).

The mix is reads (account lookups, catalog pages, license checks) and writes (orders and
license grants), weighted by :class:`LoadMix`. Every write has a unique ``request_id``
(``<run id>-<seq>``), so the client may retry it after a dropped connection (``retries``,
counted in ``retried``) without risk of a duplicate: the services deduplicate on it. Each
request's outcome is kept; each acknowledged write (2xx) is kept as an :class:`AckedWrite`
with the license id it reported, for the lost-write audit (``write_audit``).

A request fails when it gets no response or a non-2xx status: every id is drawn from
:class:`WorldIds` (present on both sides), so a 4xx is a bug, not noise.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import urllib3

from runeshift.errors import ConfigError
from services.load.world_ids import WorldIds

RequestKind = Literal["account", "catalog", "license_check", "order", "grant"]
WRITE_KINDS: frozenset[str] = frozenset({"order", "grant"})
_PRICES = ("4.99", "9.99", "14.99", "19.99", "49.99")
_CURRENCIES = (("USD", 0.85), ("EUR", 0.10), ("GBP", 0.05))


@dataclass(frozen=True)
class LoadMix:
    """Relative weights of each request kind (defaults: 85% reads, 15% writes)."""

    account: float = 0.30
    catalog: float = 0.15
    license_check: float = 0.40
    order: float = 0.10
    grant: float = 0.05

    def weights(self) -> tuple[list[RequestKind], list[float]]:
        kinds: list[RequestKind] = ["account", "catalog", "license_check", "order", "grant"]
        weights = [float(getattr(self, k)) for k in kinds]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"load mix weights must be >= 0 and not all 0, got {self}")
        return kinds, weights

    @property
    def write_share(self) -> float:
        kinds, weights = self.weights()
        return sum(w for k, w in zip(kinds, weights, strict=True) if k in WRITE_KINDS) / sum(
            weights
        )


@dataclass(frozen=True)
class RequestOutcome:
    """One request: ``status`` 0 means no response (``error`` says why)."""

    seq: int
    kind: RequestKind
    method: str
    path: str
    status: int
    ok: bool
    latency_ms: float
    sent_at: float  # seconds since the run started
    served_by: str = ""
    request_id: str | None = None
    retried: int = 0
    error: str | None = None


@dataclass(frozen=True)
class AckedWrite:
    """A write a service acknowledged: its license row must end up in ``rune.licenses``."""

    request_id: str
    kind: Literal["order", "grant"]
    license_id: str
    applied_by: str
    served_by: str
    legacy_license_id: int | None = None


@dataclass(frozen=True)
class LoadSummary:
    requests: int
    failed: int
    reads: int
    writes: int
    acknowledged_writes: int
    retried: int
    duration_s: float
    rate: float
    achieved_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    by_kind: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[index], 2)


class LoadGenerator:
    """Sends ``rate`` requests/s to ``base_url`` (the proxy) until stopped; see the module note."""

    def __init__(
        self,
        base_url: str,
        rate: float,
        ids: WorldIds,
        mix: LoadMix | None = None,
        *,
        workers: int = 256,
        seed: int | None = None,
        run_id: str | None = None,
        timeout_s: float = 90.0,
        retries: int = 1,
    ) -> None:
        if rate <= 0:
            raise ConfigError(f"--rate must be positive, got {rate}")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.ids = ids
        self.mix = mix or LoadMix()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._kinds, self._weights = self.mix.weights()
        self._rng = random.Random(seed)
        self._workers = workers
        self._http = urllib3.PoolManager(
            maxsize=workers,
            block=False,
            timeout=urllib3.Timeout(connect=2.0, read=timeout_s),
            # Connection-level retries only (never on a status): safe for writes, which
            # carry an idempotency key.
            retries=urllib3.Retry(
                total=retries,
                connect=retries,
                read=retries,
                status=0,
                other=0,
                allowed_methods=None,
                raise_on_status=False,
                redirect=False,
            ),
        )
        self._lock = threading.Lock()
        self._outcomes: list[RequestOutcome] = []
        self._acked: list[AckedWrite] = []
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._started = 0.0
        self._ended = 0.0
        # Wall-clock time of ``_started`` (``RequestOutcome.sent_at`` counts from it).
        self.started_wall = 0.0

    # -- the request plan ----------------------------------------------------------------

    def _plan(self, seq: int) -> tuple[RequestKind, str, str, dict[str, Any] | None]:
        rng = self._rng
        kind = rng.choices(self._kinds, self._weights)[0]
        member = rng.choice(self.ids.member_ids)
        script = rng.choice(self.ids.script_ids)
        if kind == "account":
            return kind, "GET", f"/accounts/{member}", None
        if kind == "catalog":
            after = rng.choice(
                (None, *self.ids.script_ids[:: max(1, len(self.ids.script_ids) // 8)])
            )
            return kind, "GET", "/scripts?limit=20" + (f"&after={after}" if after else ""), None
        if kind == "license_check":
            return kind, "GET", f"/licenses/check?member_id={member}&script_id={script}", None
        request_id = f"{self.run_id}-{seq:08d}"
        if kind == "order":
            currency = rng.choices([c for c, _ in _CURRENCIES], [w for _, w in _CURRENCIES])[0]
            body = {
                "member_id": member,
                "script_id": script,
                "kind": rng.choices(("monthly", "lifetime"), (0.7, 0.3))[0],
                "price": rng.choice(_PRICES),
                "currency": currency,
                "request_id": request_id,
            }
            return kind, "POST", "/orders", body
        body = {
            "member_id": member,
            "script_id": script,
            "kind": rng.choices(("trial", "staff"), (0.6, 0.4))[0],
            "request_id": request_id,
        }
        return kind, "POST", "/licenses", body

    # -- sending -------------------------------------------------------------------------

    def _send(
        self, seq: int, kind: RequestKind, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        sent = time.monotonic()
        request_id = body["request_id"] if body else None
        status, served_by, retried, error, data = 0, "", 0, None, b""
        try:
            response = self._http.request(
                method,
                self.base_url + path,
                body=json.dumps(body).encode() if body is not None else None,
                headers={"content-type": "application/json"},
            )
            status = response.status
            served_by = response.headers.get("x-served-by", "")
            retried = len(response.retries.history) if response.retries else 0
            data = response.data
        except urllib3.exceptions.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.monotonic() - sent) * 1000
        ok = 200 <= status < 300
        if not ok and error is None:
            error = data[:300].decode(errors="replace")
        outcome = RequestOutcome(
            seq,
            kind,
            method,
            path,
            status,
            ok,
            latency_ms,
            sent - self._started,
            served_by,
            request_id,
            retried,
            error,
        )
        acked = None
        if ok and request_id is not None:
            result = json.loads(data)
            acked = AckedWrite(
                request_id,
                "order" if kind == "order" else "grant",
                str(result["license_id"]),
                str(result.get("applied_by", "")),
                served_by,
                result.get("legacy_license_id"),
            )
        with self._lock:
            self._outcomes.append(outcome)
            if acked is not None:
                self._acked.append(acked)

    def _schedule(self) -> None:
        assert self._pool is not None
        seq = 0
        while not self._stop.is_set():
            due = self._started + seq / self.rate
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            self._pool.submit(self._send, seq, *self._plan(seq))
            seq += 1

    # -- control -------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        """Start sending in the background; ``stop()`` ends it and returns the summary."""
        if self._scheduler is not None:
            raise ConfigError("this load generator was already started; make a new one")
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="load")
        self._started = time.monotonic()
        self.started_wall = time.time()
        self._scheduler = threading.Thread(
            target=self._schedule, name="load-scheduler", daemon=True
        )
        self._scheduler.start()
        return self

    def stop(self) -> LoadSummary:
        """Stop scheduling, wait for every request sent to finish, summarise."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join()
        self._ended = time.monotonic()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return self.summary()

    def run(self, seconds: float) -> LoadSummary:
        """Send for ``seconds``, then stop and summarise."""
        self.start()
        self._stop.wait(seconds)
        return self.stop()

    @property
    def outcomes(self) -> list[RequestOutcome]:
        with self._lock:
            return list(self._outcomes)

    @property
    def acknowledged(self) -> list[AckedWrite]:
        with self._lock:
            return list(self._acked)

    def summary(self) -> LoadSummary:
        outcomes = self.outcomes
        latencies = sorted(o.latency_ms for o in outcomes)
        duration = max((self._ended or time.monotonic()) - self._started, 1e-9)
        writes = sum(1 for o in outcomes if o.kind in WRITE_KINDS)
        return LoadSummary(
            requests=len(outcomes),
            failed=sum(1 for o in outcomes if not o.ok),
            reads=len(outcomes) - writes,
            writes=writes,
            acknowledged_writes=len(self.acknowledged),
            retried=sum(o.retried for o in outcomes),
            duration_s=round(duration, 3),
            rate=self.rate,
            achieved_rate=round(len(outcomes) / duration, 2),
            p50_ms=_percentile(latencies, 0.50),
            p99_ms=_percentile(latencies, 0.99),
            max_ms=round(latencies[-1], 2) if latencies else 0.0,
            by_kind=dict(Counter(o.kind for o in outcomes)),
            failures=dict(Counter(str(o.status) for o in outcomes if not o.ok)),
            served_by=dict(Counter(o.served_by or "none" for o in outcomes)),
        )
