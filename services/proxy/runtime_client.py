"""A client of HAProxy's runtime API (the admin stats socket on a loopback port).

``route_reads("rune")`` gives ``reads/rune`` the routed weight first and only then drains
``reads/legacy`` (weight 0), so at every instant some server takes new requests, and the
drained one finishes what it holds: HAProxy never cuts established sessions on a weight
change. ``shutdown_sessions`` is the one call that does cut them, for when that is meant.
By default a route only moves to a server whose health check passes (``/ready``): moving
writes to a service that is not ready would turn every write into a 503.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from dataclasses import dataclass

from runeshift.errors import FatalError, TransientError
from services.proxy.haproxy_config import (
    BACKENDS,
    ROUTED_WEIGHT,
    SERVERS,
    BackendName,
    ServerName,
)


@dataclass(frozen=True)
class Routes:
    """Which service each backend sends new requests to."""

    reads: ServerName
    writes: ServerName


@dataclass(frozen=True)
class ServerState:
    """One row of ``show stat`` for a server."""

    backend: str
    server: str
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2", ...
    weight: int
    current_sessions: int
    total_sessions: int
    check_status: str

    @property
    def healthy(self) -> bool:
        return self.status.startswith(("UP", "DRAIN")) or self.status == "no check"


class HAProxyRuntime:
    """Commands over ``host:port`` (one connection per command, as the API expects)."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    def command(self, line: str) -> str:
        """Send one runtime API command; its answer as text."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as sock:
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            raise TransientError(
                f"HAProxy runtime API at {self.host}:{self.port} did not answer '{line}': {exc}"
            ) from exc
        return b"".join(chunks).decode()

    def _checked(self, line: str) -> str:
        answer = self.command(line).strip()
        if answer and not answer.startswith("Draining"):  # 'set weight' answers nothing on success
            lowered = answer.lower()
            if (
                "no such" in lowered
                or "unknown" in lowered
                or "require" in lowered
                or "invalid" in lowered
            ):
                raise FatalError(f"HAProxy refused '{line}': {answer}")
        return answer

    def servers(self) -> list[ServerState]:
        """Every server of both backends, from ``show stat``."""
        text = self.command("show stat").lstrip("# ")
        states = []
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") in BACKENDS and row.get("svname") in SERVERS:
                states.append(
                    ServerState(
                        backend=row["pxname"],
                        server=row["svname"],
                        status=row["status"],
                        weight=int(row["weight"] or 0),
                        current_sessions=int(row["scur"] or 0),
                        total_sessions=int(row["stot"] or 0),
                        check_status=row.get("check_status", ""),
                    )
                )
        return states

    def server(self, backend: BackendName, server: ServerName) -> ServerState:
        for state in self.servers():
            if state.backend == backend and state.server == server:
                return state
        raise FatalError(f"HAProxy has no server {backend}/{server}")

    def weight(self, backend: BackendName, server: ServerName) -> int:
        answer = self.command(f"get weight {backend}/{server}").strip()
        try:
            return int(answer.split()[0])
        except (IndexError, ValueError):
            raise FatalError(
                f"HAProxy answered 'get weight {backend}/{server}' with {answer!r}"
            ) from None

    def set_weight(self, backend: BackendName, server: ServerName, weight: int) -> None:
        self._checked(f"set weight {backend}/{server} {weight}")

    def set_state(self, backend: BackendName, server: ServerName, state: str) -> None:
        """``ready``, ``drain`` or ``maint`` (maint also stops the health checks' effect)."""
        self._checked(f"set server {backend}/{server} state {state}")

    def shutdown_sessions(self, backend: BackendName, server: ServerName) -> None:
        """Cut every session established to the server: only when that is intended."""
        self._checked(f"shutdown sessions server {backend}/{server}")

    def route(self, backend: BackendName, to: ServerName, *, require_ready: bool = True) -> Routes:
        """Send new requests of ``backend`` to ``to``; established ones finish where they are."""
        if to not in SERVERS:
            raise FatalError(f"route target must be one of {', '.join(SERVERS)}, got {to!r}")
        if require_ready:
            state = self.server(backend, to)
            if not state.status.startswith(("UP", "DRAIN")):
                raise TransientError(
                    f"{backend}/{to} is {state.status} (health check: {state.check_status}); "
                    f"not routing {backend} to a service that is not ready"
                )
        self.set_weight(backend, to, ROUTED_WEIGHT)
        for other in SERVERS:
            if other != to:
                self.set_weight(backend, other, 0)
        return self.current_routes()

    def route_reads(self, to: ServerName, *, require_ready: bool = True) -> Routes:
        return self.route("reads", to, require_ready=require_ready)

    def route_writes(self, to: ServerName, *, require_ready: bool = True) -> Routes:
        return self.route("writes", to, require_ready=require_ready)

    def _routed(self, backend: BackendName) -> ServerName:
        weights = {server: self.weight(backend, server) for server in SERVERS}
        routed = [server for server, weight in weights.items() if weight > 0]
        if len(routed) != 1:
            raise FatalError(
                f"backend {backend} routes to {routed or 'no server'} (weights {weights}); "
                f"expected exactly one: fix it with route_{backend}()"
            )
        return routed[0]

    def current_routes(self) -> Routes:
        return Routes(reads=self._routed("reads"), writes=self._routed("writes"))

    def wait_healthy(self, *, timeout_s: float = 15.0) -> list[ServerState]:
        """Wait until every server's health check passes (the services answer ``/ready``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.servers()
            if states and all(s.status.startswith(("UP", "DRAIN")) for s in states):
                return states
            if time.monotonic() > deadline:
                shown = ", ".join(f"{s.backend}/{s.server}={s.status}" for s in states)
                raise TransientError(f"HAProxy servers not healthy after {timeout_s:.0f}s: {shown}")
            time.sleep(0.1)
