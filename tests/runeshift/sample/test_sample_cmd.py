"""``runeshift sample legacy`` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from runeshift.connections import mysql_connect
from runeshift.sample import SECRET_CANARY


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sample_legacy_cli_builds_the_databases_named_in_settings(mysql_url: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    forums, repo = f"t_cli_forums_{suffix}", f"t_cli_repo_{suffix}"
    env = {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": mysql_url + forums,
        "RUNESHIFT_REPO_URL": mysql_url + repo,
    }
    try:
        as_json = _run(["sample", "legacy", "--scale", "0.1", "--seed", "5", "--json"], env)
        assert as_json.returncode == 0, as_json.stderr
        summary = json.loads(as_json.stdout)
        assert summary["forums_db"] == forums and summary["repo_db"] == repo
        assert summary["rows"][f"{forums}.core_members"] > 150
        assert summary["rows"][f"{repo}.licenses"] >= 1000

        rendered = _run(["sample", "legacy", "--scale", "0.1", "--seed", "5"], env)
        assert rendered.returncode == 0, rendered.stderr
        assert f"{repo}.licenses" in rendered.stdout and "total" in rendered.stdout
        password = mysql_url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
        for stream in (as_json.stdout, as_json.stderr, rendered.stdout, rendered.stderr):
            assert SECRET_CANARY not in stream and password not in stream

        conn = mysql_connect(mysql_url, database="")
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {repo}.licenses")
            assert cur.fetchone()[0] == summary["rows"][f"{repo}.licenses"]
        conn.close()
    finally:
        conn = mysql_connect(mysql_url, database="")
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {forums}")
            cur.execute(f"DROP DATABASE IF EXISTS {repo}")
        conn.close()


def test_sample_legacy_refuses_settings_on_two_servers(mysql_url: str) -> None:
    env = {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": mysql_url + "a",
        "RUNESHIFT_REPO_URL": "mysql://someone:pw@127.0.0.2:1/b",
    }
    result = _run(["sample", "legacy", "--scale", "0.1"], env)
    assert result.returncode == 2
    assert "different servers" in result.stderr and "Traceback" not in result.stderr
