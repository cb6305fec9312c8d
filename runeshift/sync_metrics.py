"""Live numbers of the follower, and their Prometheus text exposition on ``/metrics``.

Design note. One :class:`SyncMetrics` per follower process, updated by the applier after
each commit and read by the live display, the ``/metrics`` endpoint and the benchmark. It
holds counters since start and the recent heartbeat lags (for quantiles); nothing here is
durable (``runeshift.sync_state`` is), so a restart starts counting from zero, which is
what Prometheus ``_total`` counters expect.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LAG_WINDOW = 4096


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class SourceMetrics:
    changes: int = 0
    transactions: int = 0
    lag_seconds: float | None = None
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))
    position: str = ""
    reconnects: int = 0


@dataclass
class SyncMetrics:
    """Thread-safe counters and gauges of one follower."""

    started: float = field(default_factory=time.monotonic)
    role: str = "starting"
    batches: int = 0
    rows_applied: int = 0
    quarantined: int = 0
    queue_depth: int = 0
    paused_tables: list[str] = field(default_factory=list)
    sources: dict[str, SourceMetrics] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def source(self, name: str) -> SourceMetrics:
        with self._lock:
            return self.sources.setdefault(name, SourceMetrics())

    def record_batch(
        self, per_source: dict[str, tuple[int, int, str]], rows: int, quarantined: int
    ) -> None:
        with self._lock:
            self.batches += 1
            self.rows_applied += rows
            self.quarantined += quarantined
            for name, (changes, txns, position) in per_source.items():
                m = self.sources.setdefault(name, SourceMetrics())
                m.changes += changes
                m.transactions += txns
                m.position = position

    def record_lag(self, source: str, seconds: float) -> None:
        with self._lock:
            m = self.sources.setdefault(source, SourceMetrics())
            m.lag_seconds = seconds
            m.lags.append(seconds)

    def rate(self) -> float:
        elapsed = max(1e-9, time.monotonic() - self.started)
        return sum(m.changes for m in self.sources.values()) / elapsed

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "role": self.role,
                "uptime_seconds": round(time.monotonic() - self.started, 3),
                "batches": self.batches,
                "rows_applied": self.rows_applied,
                "quarantined": self.quarantined,
                "queue_depth": self.queue_depth,
                "paused_tables": list(self.paused_tables),
                "changes_per_second": round(self.rate(), 1),
                "sources": {
                    name: {
                        "changes": m.changes,
                        "transactions": m.transactions,
                        "lag_seconds": m.lag_seconds,
                        "lag_p50_seconds": quantile(list(m.lags), 0.5),
                        "lag_p99_seconds": quantile(list(m.lags), 0.99),
                        "position": m.position,
                        "reconnects": m.reconnects,
                    }
                    for name, m in self.sources.items()
                },
            }

    def prometheus(self) -> str:
        """The metrics in Prometheus text exposition format 0.0.4."""
        snap = self.snapshot()
        lines: list[str] = []

        def metric(
            name: str, kind: str, help_text: str, samples: Iterator[tuple[str, Any]]
        ) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                if value is None:
                    continue
                lines.append(f"{name}{labels} {float(value):g}")

        sources = snap["sources"]

        def per_source(key: str) -> Iterator[tuple[str, Any]]:
            for name, values in sorted(sources.items()):
                yield f'{{source="{name}"}}', values[key]

        metric(
            "runeshift_sync_changes_applied_total",
            "counter",
            "Source row changes applied to the target.",
            per_source("changes"),
        )
        metric(
            "runeshift_sync_transactions_applied_total",
            "counter",
            "Source transactions applied to the target.",
            per_source("transactions"),
        )
        metric(
            "runeshift_sync_lag_seconds",
            "gauge",
            "End-to-end lag from the last heartbeat (write on the source to commit on the target).",
            per_source("lag_seconds"),
        )
        metric(
            "runeshift_sync_reconnects_total",
            "counter",
            "Binlog stream reconnects.",
            per_source("reconnects"),
        )
        lines.append(
            "# HELP runeshift_sync_lag_quantile_seconds Heartbeat lag quantiles over the recent window."
        )
        lines.append("# TYPE runeshift_sync_lag_quantile_seconds gauge")
        for name, values in sorted(sources.items()):
            for q, key in (("0.5", "lag_p50_seconds"), ("0.99", "lag_p99_seconds")):
                if values[key] is not None:
                    lines.append(
                        f'runeshift_sync_lag_quantile_seconds{{source="{name}",quantile="{q}"}} {values[key]:g}'
                    )
        for name, kind, help_text, value in (
            (
                "runeshift_sync_batches_total",
                "counter",
                "Target transactions committed.",
                snap["batches"],
            ),
            (
                "runeshift_sync_quarantined_total",
                "counter",
                "Rows sent to quarantine.",
                snap["quarantined"],
            ),
            (
                "runeshift_sync_queue_depth",
                "gauge",
                "Decoded transactions waiting to be applied.",
                snap["queue_depth"],
            ),
            (
                "runeshift_sync_paused_tables",
                "gauge",
                "Source tables paused by schema drift.",
                len(snap["paused_tables"]),
            ),
            (
                "runeshift_sync_active",
                "gauge",
                "1 while this process is the active follower.",
                int(snap["role"] == "active"),
            ),
        ):
            metric(name, kind, help_text, iter([("", value)]))
        return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves ``render()`` on ``GET /metrics`` from a daemon thread (stdlib only)."""

    def __init__(self, render: Callable[[], str], port: int, host: str = "127.0.0.1") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
