"""HAProxy really routes: reads and writes observed on the intended service, switched through
the runtime API without cutting requests in flight. Everything is a real process: the two
services (``python -m ...``) and Debian's haproxy, started by ``ServiceWorld``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest

from runeshift.errors import TransientError
from runeshift.sandbox.server_process import pid_alive
from runeshift.settings import Settings
from services.proxy.haproxy_config import ProxyConfig, render_config
from services.proxy.runtime_client import Routes
from services.world import ServiceWorld
from tests.conftest import backfilled_world
from tests.services.service_http import call

FORUMS, REPO, LEDGER = "px_forums", "px_repo", "px_standin"


@pytest.fixture(scope="module")
def settings(mysql_url: str, pg_server_url: str, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    with backfilled_world(
        mysql_url, pg_server_url, home, forums_db=FORUMS, repo_db=REPO, seed=13
    ) as settings:
        yield settings


@pytest.fixture
def world(settings: Settings, tmp_path):
    started = ServiceWorld.start(
        settings, state_dir=tmp_path / "services", ledger_db=LEDGER, fence_budget_s=10.0
    )
    yield started
    started.stop()


def _pair(settings: Settings) -> tuple[int, int]:
    with psycopg.connect(settings.postgres_url) as conn:
        row = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.accounts a, rune.scripts s "
            "ORDER BY random() LIMIT 1"
        ).fetchone()
    return int(row[0]), int(row[1])


def _grant(world: ServiceWorld, settings: Settings, rid: str) -> tuple[int, dict, dict]:
    member, script = _pair(settings)
    body = {"member_id": member, "script_id": script, "kind": "trial", "request_id": rid}
    return call("POST", world.proxy_url + "/licenses", body)


def test_config_sends_reads_and_writes_to_separate_backends():
    text = render_config(ProxyConfig(8000, 8001, 8002, 8003, reads_to="rune"))
    assert "acl is_read method GET HEAD" in text and "use_backend reads if is_read" in text
    assert "default_backend writes" in text and "option httpchk GET /ready" in text
    assert "stats socket ipv4@127.0.0.1:8001 level admin" in text
    reads = text.split("\nbackend reads")[1].split("\nbackend writes")[0]
    assert "server rune 127.0.0.1:8003 check weight 100" in reads
    assert "server legacy 127.0.0.1:8002 check weight 0" in reads


def test_reads_and_writes_go_where_the_runtime_api_routes_them(world: ServiceWorld, settings):
    assert world.proxy.current_routes() == Routes("legacy", "legacy")
    for pid in (world.state.proxy.pid, world.state.rune.pid, world.state.legacy.pid):
        assert pid_alive(pid)
    status, _, headers = call("GET", world.proxy_url + "/scripts?limit=3")
    assert status == 200 and headers["x-served-by"] == "legacy"
    status, body, headers = _grant(world, settings, f"px-1-{uuid.uuid4().hex}")
    assert status == 201 and headers["x-served-by"] == "legacy" and body["applied_by"] == "legacy"

    assert world.proxy.route_reads("rune") == Routes("rune", "legacy")
    before = world.rune_fence.stats()["by_route"].get("GET /scripts", 0)
    for _ in range(5):
        assert call("GET", world.proxy_url + "/scripts?limit=3")[2]["x-served-by"] == "rune"
    assert world.rune_fence.stats()["by_route"]["GET /scripts"] == before + 5
    status, _, headers = _grant(world, settings, f"px-2-{uuid.uuid4().hex}")
    assert status == 201 and headers["x-served-by"] == "legacy"

    assert world.proxy.route_writes("rune") == Routes("rune", "rune")
    status, body, headers = _grant(world, settings, f"px-3-{uuid.uuid4().hex}")
    assert status == 201 and headers["x-served-by"] == "rune" and body["applied_by"] == "rune"
    assert world.legacy_fence.stats()["by_route"]["POST /licenses"] == 2

    assert world.proxy.route_reads("legacy") == Routes("legacy", "rune")
    assert call("GET", world.proxy_url + "/scripts?limit=3")[2]["x-served-by"] == "legacy"
    status = world.status()
    assert status.all_up and status.routes == Routes("legacy", "rune")


def test_switching_writes_keeps_the_held_write_and_forward_delivers_it(world, settings):
    """The cutover's write switch: hold at legacy, move the route, forward what was held."""
    assert world.legacy_fence.hold(drain_timeout=5).drained
    rid = f"px-held-{uuid.uuid4().hex}"
    results: list[tuple[int, dict, dict]] = []
    worker = threading.Thread(target=lambda: results.append(_grant(world, settings, rid)))
    worker.start()
    deadline = time.monotonic() + 5
    while world.legacy_fence.status().held != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The held request is an established session on writes/legacy; draining keeps it.
    assert world.proxy.route_writes("rune") == Routes("legacy", "rune")
    legacy_state = world.proxy.server("writes", "legacy")
    assert legacy_state.weight == 0 and legacy_state.current_sessions == 1
    status, body, headers = _grant(world, settings, f"px-new-{uuid.uuid4().hex}")
    assert status == 201 and headers["x-served-by"] == "rune"  # new writes: straight to Rune
    assert world.rune_fence.status().writes == "open"
    assert world.legacy_fence.forward(world.rune_url).writes == "forward"
    worker.join(15)
    status, body, headers = results[0]
    assert body["applied_by"] == "rune"
    assert (
        status == 201 and headers["x-served-by"] == "rune" and headers["x-forwarded-by"] == "legacy"
    )
    assert call("GET", f"{world.rune_url}/writes/{rid}")[1]["in_rune"] is True
    fence = world.legacy_fence.status()
    assert fence.forwarded_total == 1 and fence.expired_total == 0 and fence.held == 0


def test_routes_only_move_to_a_ready_service(world):
    world.rune_fence.set(reads="drain")  # /ready answers 503: the health check takes it out
    deadline = time.monotonic() + 10
    while not world.proxy.server("reads", "rune").status.startswith("DOWN"):
        assert time.monotonic() < deadline, world.proxy.server("reads", "rune")
        time.sleep(0.1)
    with pytest.raises(TransientError, match="not ready"):
        world.proxy.route_reads("rune")
    assert world.proxy.current_routes() == Routes("legacy", "legacy")
    world.rune_fence.set(reads="open")
    world.proxy.wait_healthy(timeout_s=10)
    assert world.proxy.route_reads("rune").reads == "rune"


def test_start_is_idempotent_and_stop_ends_every_process(settings, tmp_path):
    state_dir = tmp_path / "services"
    world = ServiceWorld.start(settings, state_dir=state_dir, ledger_db=LEDGER)
    again = ServiceWorld.start(settings, state_dir=state_dir, ledger_db=LEDGER)
    assert again.state == world.state
    attached = ServiceWorld.attach(state_dir)
    assert attached is not None and attached.proxy_url == world.proxy_url
    pids = (world.state.proxy.pid, world.state.rune.pid, world.state.legacy.pid)
    attached.stop()
    assert not any(pid_alive(pid) for pid in pids)
    assert ServiceWorld.attach(state_dir) is None


def test_cli_services_up_status_route_down(settings, tmp_path):
    env = {
        **os.environ,
        "RUNESHIFT_HOME": str(tmp_path),
        "RUNESHIFT_FORUMS_URL": settings.forums_url,
        "RUNESHIFT_REPO_URL": settings.repo_url,
        "RUNESHIFT_POSTGRES_URL": settings.postgres_url,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runeshift.cli", "services", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert cli("status").returncode == 1  # nothing running yet
    try:
        up = cli("up", "--json", "--ledger-db", LEDGER)
        assert up.returncode == 0, up.stderr
        started = json.loads(up.stdout)
        assert started["up"] is True and started["routes"] == {
            "reads": "legacy",
            "writes": "legacy",
        }
        assert (tmp_path / "services" / "state.json").is_file()
        state = (tmp_path / "services" / "state.json").read_text()
        assert urlsplit(settings.postgres_url).password not in state  # URLs stay out of state
        proxy_url = started["proxy_url"]
        assert call("GET", proxy_url + "/ready")[2]["x-served-by"] == "legacy"
        routed = cli("route", "--reads", "rune", "--json")
        assert routed.returncode == 0, routed.stderr
        assert json.loads(routed.stdout)["routes"] == {"reads": "rune", "writes": "legacy"}
        assert call("GET", proxy_url + "/ready")[2]["x-served-by"] == "rune"
        status = cli("status")
        assert status.returncode == 0 and "reads -> rune" in status.stdout
        assert cli("down").returncode == 0
        assert cli("status", "--json").returncode == 1
    finally:
        cli("down")  # a failed assertion must not leave the processes running
