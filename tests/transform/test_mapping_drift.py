"""``mappings check`` passes on the legacy schema and reports every kind of drift with exit code 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runeshift.connections import mysql_connect
from runeshift.sample.legacy_world import generate_legacy_world

FORUMS, REPO = "drift_forums", "drift_repo"


@pytest.fixture
def world(mysql_url: str) -> dict[str, str]:
    generate_legacy_world(mysql_url, scale=0.1, seed=3, forums_db=FORUMS, repo_db=REPO)
    return {"RUNESHIFT_FORUMS_URL": mysql_url + FORUMS, "RUNESHIFT_REPO_URL": mysql_url + REPO}


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "mappings", "check", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )


def _alter(url: str, *statements: str) -> None:
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def test_clean_schema_passes(world):
    proc = _check(world)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["findings"] == []
    # The store is one-way (switched off at complete): said, but not a failure.
    assert "rune.orders" in report["one_way_tables"]
    assert "rune.licenses" not in report["one_way_tables"]


def test_every_drift_is_reported(world):
    _alter(
        world["RUNESHIFT_REPO_URL"],
        f"ALTER TABLE {REPO}.licenses ADD COLUMN coupon VARCHAR(20) NULL",
        f"ALTER TABLE {REPO}.licenses MODIFY price_paid DECIMAL(10,3) NOT NULL DEFAULT 0",
        f"ALTER TABLE {REPO}.script_reviews DROP COLUMN body",
        f"CREATE TABLE {REPO}.gift_cards (id INT PRIMARY KEY)",
    )
    proc = _check(world)
    assert proc.returncode == 1
    findings = {(f["kind"], f["table"], f["column"]) for f in json.loads(proc.stdout)["findings"]}
    assert findings == {
        ("unmapped_column", "repo.licenses", "coupon"),
        ("changed_type", "repo.licenses", "price_paid"),
        ("missing_column", "repo.script_reviews", "body"),
        ("unmapped_table", "repo.gift_cards", None),
    }


def test_show_renders_source_transform_target():
    proc = subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "mappings", "show", "accounts", "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert {
        "source": "core_members.name",
        "transform": "repair_mojibake(name)",
        "target": "display_name",
        "note": "",
    } in rows
    assert any(
        r["source"] == "core_members.members_pass_hash" and r["transform"] == "excluded"
        for r in rows
    )
