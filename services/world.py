"""The services world: the Rune service, the legacy stand-in and HAProxy, started as one.

``ServiceWorld.start(settings)`` starts, on free loopback ports and in this order, the
legacy stand-in (on ``forums_url``/``repo_url``), the Rune service (on ``postgres_url``,
reading the stand-in's ledger so ``GET /writes/{id}`` covers both sides) and HAProxy in
front of them with reads and writes routed to legacy, then waits until HAProxy's health
checks see both services ready. Each is a real process in its own session, so the world
outlives the command that started it; ``stop()`` (or ``runeshift services down``) ends them
by pid. The state (ports, pids, logs) is ``<state_dir>/state.json`` (default
``$RUNESHIFT_HOME/services/``), which is how ``ServiceWorld.attach()`` finds a running world.

What the cutover uses::

    world = ServiceWorld.start(settings)          # or ServiceWorld.attach()
    world.proxy_url                                # where clients (the load generator) go
    world.proxy.route_reads("rune"); world.proxy.route_writes("rune"); world.proxy.current_routes()
    world.legacy_fence.hold(drain_timeout=10)      # FenceClient: hold / forward / open
    world.legacy_fence.forward(world.rune_url)
    world.rune_fence.status()
    world.stop()

Database URLs reach the services through their environment, never their command line
(``ps`` shows command lines to every user).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3

from runeshift.errors import ConfigError, FatalError, TransientError
from runeshift.sandbox.server_process import free_port, port_open
from runeshift.settings import Settings
from services.legacy_service.standin_ledger import DEFAULT_LEDGER_DB, check_ledger_name
from services.proxy import detached_process
from services.proxy.haproxy_config import ProxyConfig, ServerName
from services.proxy.haproxy_process import HAProxyProcess, start_haproxy
from services.proxy.runtime_client import HAProxyRuntime, Routes
from services.rune_service.fence_client import FenceClient
from services.rune_service.shop_api import ServiceName
from services.rune_service.write_fence import DEFAULT_BUDGET_S, FenceStatus

STATE_VERSION = 1
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServiceProcess:
    """One of the two HTTP services: its pid, ports and log."""

    name: ServiceName
    pid: int
    port: int
    admin_port: int
    log_path: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def alive(self) -> bool:
        return not detached_process.exited(self.pid)


@dataclass(frozen=True)
class ProxyProcess:
    pid: int
    frontend_port: int
    runtime_port: int
    config_path: str
    log_path: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.frontend_port}"

    @property
    def alive(self) -> bool:
        return not detached_process.exited(self.pid)


@dataclass(frozen=True)
class WorldState:
    """What ``state.json`` holds (``version`` guards against reading another layout)."""

    legacy: ServiceProcess
    rune: ServiceProcess
    proxy: ProxyProcess
    ledger_db: str
    fence_budget_s: float
    started_at: float
    version: int = STATE_VERSION

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> WorldState:
        if data.get("version") != STATE_VERSION:
            raise ConfigError(
                f"{path} is services state version {data.get('version')}, this runeshift reads "
                f"version {STATE_VERSION}; stop those processes by pid and delete the file"
            )
        return cls(
            legacy=ServiceProcess(**data["legacy"]),
            rune=ServiceProcess(**data["rune"]),
            proxy=ProxyProcess(**data["proxy"]),
            ledger_db=data["ledger_db"],
            fence_budget_s=float(data["fence_budget_s"]),
            started_at=float(data["started_at"]),
        )


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    url: str
    alive: bool
    ready: bool
    fence: FenceStatus | None


@dataclass(frozen=True)
class WorldStatus:
    """``runeshift services status``: processes, readiness, routes and fences."""

    state_dir: str
    proxy_url: str
    proxy_alive: bool
    routes: Routes | None
    services: list[ServiceHealth]

    @property
    def all_up(self) -> bool:
        return self.proxy_alive and self.routes is not None and all(s.ready for s in self.services)

    def as_json(self) -> dict[str, Any]:
        return {
            "state_dir": self.state_dir,
            "proxy_url": self.proxy_url,
            "proxy_alive": self.proxy_alive,
            "routes": asdict(self.routes) if self.routes else None,
            "up": self.all_up,
            "services": [
                {**asdict(s), "fence": s.fence.as_json() if s.fence else None}
                for s in self.services
            ],
        }


def default_state_dir(settings: Settings) -> Path:
    return settings.home / "services"


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _ledger_url(repo_url: str, ledger_db: str) -> str:
    parts = urlsplit(repo_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + ledger_db, "", ""))


def _wait_for_service(service: ServiceProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (port_open(service.port) and port_open(service.admin_port)):
        if not service.alive or time.monotonic() > deadline:
            tail = Path(service.log_path).read_text(errors="replace").splitlines()[-15:]
            raise FatalError(
                f"the {service.name} service did not start listening on {service.url}:\n"
                + "\n".join(tail)
            )
        time.sleep(0.05)


def _spawn_service(
    name: ServiceName,
    module: str,
    env: dict[str, str],
    state_dir: Path,
    extra: list[str],
    ports: tuple[int, int] | None = None,
) -> ServiceProcess:
    port, admin_port = ports or (free_port(), free_port())
    log_path = state_dir / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        module,
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
        *extra,
    ]
    pid = detached_process.spawn(argv, log_path, env=env)
    return ServiceProcess(name, pid, port, admin_port, str(log_path))


def _service_env(settings: Settings, ledger_db: str) -> dict[str, str]:
    repo_url = settings.require("repo_url")
    env = {**os.environ}
    env.update(
        RUNESHIFT_FORUMS_URL=settings.require("forums_url"),
        RUNESHIFT_REPO_URL=repo_url,
        RUNESHIFT_POSTGRES_URL=settings.require("postgres_url"),
        RUNESHIFT_STANDIN_LEDGER_URL=_ledger_url(repo_url, ledger_db),
    )
    return env


def _service_args(
    name: ServiceName, fence_budget_s: float, ledger_db: str
) -> tuple[str, list[str]]:
    """The module and arguments a service starts with."""
    budget = ["--fence-budget", str(fence_budget_s)]
    if name == "legacy":
        return "services.legacy_service", [*budget, "--ledger-db", ledger_db]
    return "services.rune_service", budget


class ServiceWorld:
    """A running world; build one with :meth:`start` or :meth:`attach`."""

    def __init__(self, state: WorldState, state_dir: Path) -> None:
        self.state = state
        self.state_dir = state_dir
        self.proxy = HAProxyRuntime(HOST, state.proxy.runtime_port)
        self.rune_fence = FenceClient(state.rune.admin_url)
        self.legacy_fence = FenceClient(state.legacy.admin_url)

    @property
    def proxy_url(self) -> str:
        return self.state.proxy.url

    @property
    def rune_url(self) -> str:
        return self.state.rune.url

    @property
    def legacy_url(self) -> str:
        return self.state.legacy.url

    @property
    def rune_admin_url(self) -> str:
        return self.state.rune.admin_url

    @property
    def legacy_admin_url(self) -> str:
        return self.state.legacy.admin_url

    def fence(self, name: ServerName) -> FenceClient:
        return self.rune_fence if name == "rune" else self.legacy_fence

    @classmethod
    def start(
        cls,
        settings: Settings,
        *,
        state_dir: Path | None = None,
        fence_budget_s: float = DEFAULT_BUDGET_S,
        ledger_db: str = DEFAULT_LEDGER_DB,
        reads_to: ServerName = "legacy",
        writes_to: ServerName = "legacy",
        timeout_s: float = 30.0,
    ) -> ServiceWorld:
        """Start the three processes (see the module note); a running world is returned as is."""
        state_dir = (state_dir or default_state_dir(settings)).resolve()
        running = cls.attach(state_dir)
        if running is not None:
            if running.status().all_up:
                return running
            running.stop()
        check_ledger_name(ledger_db)
        state_dir.mkdir(parents=True, exist_ok=True)
        env = _service_env(settings, ledger_db)
        started: list[int] = []
        try:
            module, extra = _service_args("legacy", fence_budget_s, ledger_db)
            legacy = _spawn_service("legacy", module, env, state_dir, extra)
            started.append(legacy.pid)
            # The stand-in creates the ledger database the Rune service reads: start it first.
            _wait_for_service(legacy, timeout_s)
            module, extra = _service_args("rune", fence_budget_s, ledger_db)
            rune = _spawn_service("rune", module, env, state_dir, extra)
            started.append(rune.pid)
            _wait_for_service(rune, timeout_s)
            haproxy: HAProxyProcess = start_haproxy(
                ProxyConfig(
                    frontend_port=free_port(),
                    runtime_port=free_port(),
                    legacy_port=legacy.port,
                    rune_port=rune.port,
                    reads_to=reads_to,
                    writes_to=writes_to,
                    # Longer than a held write may wait, so HAProxy never cuts one.
                    server_timeout_s=max(120.0, fence_budget_s * 2 + 30),
                ),
                state_dir,
            )
            started.append(haproxy.pid)
            haproxy.runtime().wait_healthy(timeout_s=timeout_s)
        except BaseException:
            for pid in reversed(started):
                detached_process.stop(pid)
            raise
        state = WorldState(
            legacy=legacy,
            rune=rune,
            proxy=ProxyProcess(
                haproxy.pid,
                haproxy.config.frontend_port,
                haproxy.config.runtime_port,
                str(haproxy.config_path),
                str(haproxy.log_path),
            ),
            ledger_db=ledger_db,
            fence_budget_s=fence_budget_s,
            started_at=time.time(),
        )
        _state_path(state_dir).write_text(json.dumps(state.as_json(), indent=2))
        return cls(state, state_dir)

    @classmethod
    def attach(cls, state_dir: Path) -> ServiceWorld | None:
        """The world recorded in ``state_dir``, or None when there is none."""
        path = _state_path(state_dir)
        if not path.is_file():
            return None
        return cls(WorldState.from_json(json.loads(path.read_text()), path), state_dir)

    def status(self) -> WorldStatus:
        http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=2.0))
        services = []
        for service in (self.state.legacy, self.state.rune):
            ready = False
            fence = None
            if service.alive:
                try:
                    ready = http.request("GET", service.url + "/ready").status == 200
                    fence = self.fence(service.name).status()
                except (urllib3.exceptions.HTTPError, TransientError):
                    ready = False
            services.append(ServiceHealth(service.name, service.url, service.alive, ready, fence))
        routes = None
        if self.state.proxy.alive:
            try:
                routes = self.proxy.current_routes()
            except (TransientError, FatalError):
                routes = None
        return WorldStatus(
            str(self.state_dir), self.proxy_url, self.state.proxy.alive, routes, services
        )

    def kill(self, name: ServiceName) -> None:
        """SIGKILL one service (chaos): no drain, no goodbye; HAProxy's checks see it go."""
        service = self.state.rune if name == "rune" else self.state.legacy
        detached_process.kill(service.pid)

    def restart(self, settings: Settings, name: ServiceName, *, timeout_s: float = 30.0) -> None:
        """Start a dead service again on its old ports (HAProxy's config names them); a new
        process starts with its write fence open, as after any restart."""
        old = self.state.rune if name == "rune" else self.state.legacy
        if old.alive:
            raise FatalError(f"the {name} service (pid {old.pid}) is still running")
        module, extra = _service_args(name, self.state.fence_budget_s, self.state.ledger_db)
        env = _service_env(settings, self.state.ledger_db)
        new = _spawn_service(
            name, module, env, self.state_dir, extra, ports=(old.port, old.admin_port)
        )
        _wait_for_service(new, timeout_s)
        self.state = (
            replace(self.state, rune=new) if name == "rune" else replace(self.state, legacy=new)
        )
        _state_path(self.state_dir).write_text(json.dumps(self.state.as_json(), indent=2))

    def stop(self) -> None:
        """Stop HAProxy, then the services; remove the state file."""
        for pid in (self.state.proxy.pid, self.state.rune.pid, self.state.legacy.pid):
            detached_process.stop(pid)
        _state_path(self.state_dir).unlink(missing_ok=True)

    def __enter__(self) -> ServiceWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
