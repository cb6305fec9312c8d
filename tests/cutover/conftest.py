"""A whole world for cutover tests: legacy data, a backfilled target, the services behind
HAProxy and the catch-up follower running in a thread. Everything is real."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from cutover.catch_up_lag import FollowerLag
from load.target_schema import upgrade
from runeshift.backfill import run_backfill
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.settings import Settings
from runeshift.sync import SyncOptions, run_sync
from services.world import ServiceWorld
from tests.services.service_http import call

FORUMS, REPO, LEDGER = "co_forums", "co_repo", "co_standin"


@dataclass
class Traffic:
    """A small client through the proxy: a write every ``1/rate`` s, reads in between."""

    proxy_url: str
    pairs: list[tuple[int, int]]
    rate: float = 20.0
    acknowledged: list[str] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    max_write_s: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        while not self._stop.is_set():
            member, script = rnd.choice(self.pairs)
            rid = f"t-{uuid.uuid4().hex}"
            started = time.monotonic()
            status, body, headers = call(
                "POST",
                self.proxy_url + "/licenses",
                {"member_id": member, "script_id": script, "kind": "trial", "request_id": rid},
            )
            self.max_write_s = max(self.max_write_s, time.monotonic() - started)
            if status in (200, 201):
                self.acknowledged.append(rid)
                by = headers.get("x-served-by", "?")
                self.served_by[by] = self.served_by.get(by, 0) + 1
            else:
                self.failed.append((rid, status, str(body)))
            status, body, _ = call("GET", self.proxy_url + f"/accounts/{member}")
            if status != 200:
                self.failed.append((f"GET /accounts/{member}", status, str(body)))
            self._stop.wait(max(0.0, 2 / self.rate - (time.monotonic() - started)))

    def start(self, clients: int = 2) -> Traffic:
        for i in range(clients):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


@dataclass
class CutoverWorld:
    settings: Settings
    world: ServiceWorld
    services_dir: Path
    pairs: list[tuple[int, int]]

    def reset_routes(self) -> None:
        """Everything back on legacy, as a fresh world starts.

        A test that ended with writes on Rune left licenses only Rune has (no reverse
        replication runs here); they go, or a later read-sample gate would rightly see the two
        services disagree about those members.
        """
        self.world.proxy.route_reads("legacy")
        self.world.proxy.route_writes("legacy")
        self.world.legacy_fence.open()
        self.world.rune_fence.open()
        with psycopg.connect(self.settings.require("postgres_url"), autocommit=True) as conn:
            conn.execute("DELETE FROM rune.licenses WHERE legacy_license_id IS NULL")

    def lost_writes(self, request_ids: list[str]) -> list[str]:
        """Acknowledged writes whose row is not in rune.licenses (asked of the Rune service)."""
        lost = []
        for rid in request_ids:
            deadline = time.monotonic() + 10
            while True:
                status, body, _ = call("GET", self.world.rune_url + f"/writes/{rid}")
                if status == 200 and body.get("in_rune") is not False:
                    break
                if time.monotonic() > deadline:
                    lost.append(rid)
                    break
                time.sleep(0.2)
        return lost


@pytest.fixture(scope="module")
def cutover_world(mysql_url: str, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory):
    generate_legacy_world(mysql_url, scale=0.1, seed=21, forums_db=FORUMS, repo_db=REPO)
    name = f"co_{uuid.uuid4().hex[:10]}"
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    target = pg_server_url.rsplit("/", 1)[0] + "/" + name
    upgrade(target)
    home = tmp_path_factory.mktemp("cutover-home")
    settings = Settings(
        forums_url=mysql_url + FORUMS,
        repo_url=mysql_url + REPO,
        postgres_url=target,
        staging=str(home / "staging"),
        home=home,
    )
    run_backfill(settings)
    services_dir = home / "services"
    world = ServiceWorld.start(
        settings, state_dir=services_dir, ledger_db=LEDGER, fence_budget_s=30.0
    )
    stop = threading.Event()
    follower = threading.Thread(
        target=run_sync, args=(settings,), kwargs={"options": SyncOptions(), "stop": stop}
    )
    follower.start()
    probe = FollowerLag(settings)
    deadline = time.monotonic() + 60
    while probe.read().lag_s is None and time.monotonic() < deadline:
        time.sleep(0.2)
    with psycopg.connect(target) as conn:
        rows = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.accounts a, rune.scripts s "
            "WHERE a.legacy_member_id IS NOT NULL AND s.legacy_script_id IS NOT NULL "
            "ORDER BY random() LIMIT 200"
        ).fetchall()
    try:
        yield CutoverWorld(settings, world, services_dir, [(int(m), int(s)) for m, s in rows])
    finally:
        stop.set()
        follower.join(timeout=60)
        world.stop()
        with psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
