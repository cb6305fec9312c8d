"""The HAProxy configuration: one frontend, backends ``reads`` and ``writes``, two servers each.

GET and HEAD requests go to backend ``reads``, every other method to ``writes``. Each backend
has the servers ``legacy`` and ``rune``; the route of a backend is the server with a
non-zero weight (``runtime_client`` moves it). Weight 0 is HAProxy's drain: the server gets
no new requests but keeps its established ones, and its health check keeps running, so a
switch never cuts a request in flight.

Health checks ask ``GET /ready`` every ``check_interval_ms`` and allow ``check_timeout_ms``
for the answer; three failures in a row take a server out of its backend. (With HAProxy's
default, a check times out after ``inter``: at 500 ms a burst of load that made the stand-in
open a dozen new MySQL connections at once marked it DOWN and turned a healthy second into
503s.) there is deliberately no fallback to the other system (a write
must never land on a side the cutover has not opened), so a backend whose routed server is
down answers 503 until it is back.

``timeout server`` must outlast the services' write-fence budget: a held write keeps its
request open for up to that long, and HAProxy must not give up on it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ServerName = Literal["legacy", "rune"]
BackendName = Literal["reads", "writes"]
SERVERS: tuple[ServerName, ...] = ("legacy", "rune")
BACKENDS: tuple[BackendName, ...] = ("reads", "writes")
ROUTED_WEIGHT = 100


@dataclass(frozen=True)
class ProxyConfig:
    """Where everything listens (loopback) and where reads and writes start out."""

    frontend_port: int
    runtime_port: int
    legacy_port: int
    rune_port: int
    reads_to: ServerName = "legacy"
    writes_to: ServerName = "legacy"
    check_interval_ms: int = 1000
    check_timeout_ms: int = 5000
    server_timeout_s: float = 120.0
    host: str = "127.0.0.1"

    def server_port(self, server: ServerName) -> int:
        return self.legacy_port if server == "legacy" else self.rune_port


def render_config(config: ProxyConfig) -> str:
    """The haproxy.cfg text for ``config``."""
    timeout_ms = int(config.server_timeout_s * 1000)
    lines = [
        "global",
        "    maxconn 4096",
        f"    stats socket ipv4@{config.host}:{config.runtime_port} level admin",
        "    stats timeout 30s",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    timeout connect 2s",
        f"    timeout client {timeout_ms}ms",
        f"    timeout server {timeout_ms}ms",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        # Only connection failures are retried (nothing was sent), never a sent write.
        "    retries 2",
        "",
        "frontend runeshift",
        f"    bind {config.host}:{config.frontend_port}",
        "    acl is_read method GET HEAD",
        "    use_backend reads if is_read",
        "    default_backend writes",
    ]
    for backend in BACKENDS:
        routed = config.reads_to if backend == "reads" else config.writes_to
        lines += [
            "",
            f"backend {backend}",
            "    balance roundrobin",
            "    option httpchk GET /ready",
            "    http-check expect status 200",
            f"    timeout check {config.check_timeout_ms}ms",
            f"    default-server inter {config.check_interval_ms}ms fall 3 rise 2",
        ]
        for server in SERVERS:
            weight = ROUTED_WEIGHT if server == routed else 0
            lines.append(
                f"    server {server} {config.host}:{config.server_port(server)} check weight {weight}"
            )
    return "\n".join(lines) + "\n"
