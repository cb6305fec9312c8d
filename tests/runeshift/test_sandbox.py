"""The sandbox starts real servers, survives a second ``up``, and cleans up after ``down``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pymysql

from runeshift.connections import mysql_connect
from runeshift.sandbox import Sandbox


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNESHIFT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", *args], capture_output=True, text=True, env=env
    )


def test_servers_are_configured_for_change_capture(sandbox):
    mariadb, postgres = sandbox.servers
    conn = mysql_connect(mariadb.url)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id"
        )
        assert cur.fetchone() == (1, "ROW", "FULL", "FULL", 1)
    conn.close()
    with psycopg.connect(postgres.url) as pg:
        assert pg.execute("SHOW wal_level").fetchone() == ("logical",)


def _home() -> Path:
    """A world-searchable folder of its own (pytest's basetemp is 0700 and may be pruned
    by a concurrent pytest run, which the postgres user would then fail to reach)."""
    home = Path(tempfile.mkdtemp(prefix="runeshift-sbx-"))
    home.chmod(0o755)
    return home


def test_up_twice_is_harmless_and_down_removes_everything():
    home = _home()
    first = _cli("sandbox", "up", "--json", home=home)
    assert first.returncode == 0, first.stderr
    up1 = json.loads(first.stdout)
    second = _cli("sandbox", "up", "--json", home=home)
    assert second.returncode == 0, second.stderr
    up2 = json.loads(second.stdout)
    assert [s["pid"] for s in up1["servers"]] == [s["pid"] for s in up2["servers"]]
    assert up2["up"] is True
    status = json.loads(_cli("sandbox", "status", "--json", home=home).stdout)
    mysql_server = status["servers"][0]
    conn = pymysql.connect(
        host="127.0.0.1",
        port=mysql_server["port"],
        user="runeshift",
        password=mysql_server["url"].split(":")[2].split("@")[0],
    )
    conn.close()
    down = _cli("sandbox", "down", home=home)
    assert down.returncode == 0, down.stderr
    assert not (home / "sandbox").exists()
    gone = _cli("sandbox", "status", "--json", home=home)
    assert gone.returncode == 1
    assert json.loads(gone.stdout)["exists"] is False
    shutil.rmtree(home, ignore_errors=True)


def test_restart_after_servers_stop():
    home = _home()
    box = Sandbox(home)
    try:
        box.up()
        mariadb, postgres = box.servers()
        mariadb.stop(hard=True)
        postgres.stop()
        assert not box.status().all_up
        assert box.up().all_up
    finally:
        box.down()
        shutil.rmtree(home, ignore_errors=True)
