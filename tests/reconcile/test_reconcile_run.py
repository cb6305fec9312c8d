"""End-to-end reconciliation of a backfilled legacy world, clean and with planted differences.

The legacy world is generated once (scale 1) and backfilled once into a template
database; each test gets its own copy of that target (CREATE DATABASE ... TEMPLATE).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from load.target_schema import upgrade
from reconcile.reconcile_run import ReconcileOptions, run_reconcile
from reconcile.report_csv import render_csv
from reconcile.report_html import render_html
from reconcile.report_markdown import render_markdown
from runeshift.backfill import run_backfill
from runeshift.sample import SECRET_CANARY
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.secrets import Secret
from runeshift.settings import Settings

FORUMS, REPO = "rc_forums", "rc_repo"


@pytest.fixture(scope="module")
def world(mysql_url: str) -> dict[str, str]:
    generate_legacy_world(mysql_url, scale=1, seed=11, forums_db=FORUMS, repo_db=REPO)
    return {"forums_url": mysql_url + FORUMS, "repo_url": mysql_url + REPO}


def _settings(world: dict[str, str], pg: str, home: Path) -> Settings:
    return Settings(
        forums_url=world["forums_url"],
        repo_url=world["repo_url"],
        postgres_url=pg,
        staging=str(home / "staging"),
        shopify_token=Secret(""),
        home=home,
    )


@pytest.fixture(scope="module")
def template(world, pg_server_url, tmp_path_factory) -> str:
    name = f"rc_tpl_{uuid.uuid4().hex[:8]}"
    base = pg_server_url.rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{base}/{name}"
    upgrade(url)
    run_backfill(_settings(world, url, tmp_path_factory.mktemp("tpl")))
    yield name
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def target(template, pg_server_url) -> str:
    name = f"rc_{uuid.uuid4().hex[:10]}"
    base = pg_server_url.rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield f"{base}/{name}"
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# One process, and every table split by key across worker processes (the path a large
# table takes; reconcile/parallel_compare.py): the same differences, the same accounting.
COMPARE_MODES = {
    "one-process": ReconcileOptions(chunk_rows=700, workers=1),
    "three-workers": ReconcileOptions(chunk_rows=700, workers=3, parallel_min_rows=0),
}


@pytest.fixture(params=list(COMPARE_MODES))
def options(request) -> ReconcileOptions:
    return COMPARE_MODES[request.param]


def test_a_backfilled_world_reconciles_clean_with_every_row_accounted(
    world, target, tmp_path, options
):
    report = run_reconcile(_settings(world, target, tmp_path), options)
    assert report.status == "clean", [d for t in report.tables for d in t.differences][:5]
    assert report.passed and all(q.success for q in report.quality), report.quality
    for t in report.tables:
        assert (
            t.source_rows == t.expected_rows + sum(t.excluded.values()) + t.quarantined_by_mapping
        )
        assert t.matched == t.expected_rows == t.target_rows
    by = {t.target: t for t in report.tables}
    assert by["rune.licenses"].quarantined_by_mapping > 0  # orphans: accounted, not missing
    assert sum(by["rune.compile_jobs"].excluded.values()) > 0  # abandoned jobs: excluded
    assert by["rune.licenses"].chunks > 5  # several chunks compared by checksum


def _pg(url: str, *statements: tuple[str, tuple]) -> None:
    with psycopg.connect(url) as conn:
        for sql, args in statements:
            conn.execute(sql, args or None)


def _column(url: str, sql: str) -> list:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(sql).fetchall()]


def _one(url: str, sql: str, args: tuple = ()) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchone()


def test_planted_differences_of_every_kind_are_found_and_nothing_else(
    world, target, tmp_path, options
):
    lic = _column(target, "SELECT legacy_license_id FROM rune.licenses ORDER BY 1 LIMIT 8")
    acc = [
        _one(
            target,
            "SELECT min(legacy_member_id) FROM rune.accounts WHERE position(' ' in display_name) > 0",
        )[0],
        _one(target, "SELECT min(legacy_member_id) FROM rune.accounts WHERE timezone IS NULL")[0],
        _one(
            target,
            "SELECT min(legacy_member_id) FROM rune.accounts WHERE array_length(secondary_role_ids, 1) >= 2 "
            "AND secondary_role_ids[1] < secondary_role_ids[2]",
        )[0],
    ]
    assert len(set(acc)) == 3 and None not in acc
    script = _one(
        target,
        "SELECT legacy_script_id FROM rune.scripts WHERE settings <> '{}'::jsonb ORDER BY 1 LIMIT 1",
    )[0]
    rejected = lic[7]
    _pg(
        target,
        # missing, and a missing row the target rejected (accounted through runeshift.quarantine)
        ("DELETE FROM rune.licenses WHERE legacy_license_id = %s", (lic[0],)),
        ("DELETE FROM rune.licenses WHERE legacy_license_id = %s", (rejected,)),
        (
            "INSERT INTO runeshift.quarantine (source, source_table, source_key, target_table, rule, reason, raw_row) "
            "VALUES ('repo', 'licenses', %s, 'rune.licenses', 'rejected_by_target', 'planted', '{}')",
            (str(rejected),),
        ),
        # extra: a license the source never had
        (
            "INSERT INTO rune.licenses (id, legacy_license_id, account_id, script_id, kind, starts_at) "
            "SELECT gen_random_uuid(), 99999999, account_id, script_id, kind, starts_at FROM rune.licenses "
            "WHERE legacy_license_id = %s",
            (lic[1],),
        ),
        # timestamps and time zones: one microsecond, and the same wall time read in another zone
        (
            "UPDATE rune.licenses SET starts_at = starts_at + interval '1 microsecond' WHERE legacy_license_id = %s",
            (lic[2],),
        ),
        (
            "UPDATE rune.licenses SET created_at = (created_at AT TIME ZONE 'UTC') AT TIME ZONE 'America/New_York' WHERE legacy_license_id = %s",
            (lic[3],),
        ),
        # money (exact integers of minor units) and a boolean
        (
            "UPDATE rune.licenses SET price_paid_minor = price_paid_minor + 1 WHERE legacy_license_id = %s",
            (lic[4],),
        ),
        (
            "UPDATE rune.licenses SET refunded = NOT refunded WHERE legacy_license_id = %s",
            (lic[5],),
        ),
        # unicode: the same name with a combining accent (NFD) is a different value
        (
            "UPDATE rune.accounts SET display_name = replace(display_name, ' ', E' \u0301') WHERE legacy_member_id = %s",
            (acc[0],),
        ),
        # NULL vs empty string
        ("UPDATE rune.accounts SET timezone = '' WHERE legacy_member_id = %s", (acc[1],)),
        # arrays keep their order
        (
            "UPDATE rune.accounts SET secondary_role_ids = (SELECT array_agg(x ORDER BY x DESC) FROM unnest(secondary_role_ids) x) WHERE legacy_member_id = %s",
            (acc[2],),
        ),
        # JSON: a changed nested value (key order alone is not a difference: jsonb normalises it)
        (
            "UPDATE rune.scripts SET settings = settings || '{\"planted\": true}' WHERE legacy_script_id = %s",
            (script,),
        ),
    )
    report = run_reconcile(_settings(world, target, tmp_path), options)
    found = {
        (d.table, d.source_key, d.kind): [c.column for c in d.columns]
        for t in report.tables
        for d in t.differences
    }
    assert found == {
        ("rune.licenses", lic[0], "missing"): [],
        ("rune.licenses", 99999999, "extra"): [],
        ("rune.licenses", lic[2], "changed"): ["starts_at"],
        ("rune.licenses", lic[3], "changed"): ["created_at"],
        ("rune.licenses", lic[4], "changed"): ["price_paid_minor"],
        ("rune.licenses", lic[5], "changed"): ["refunded"],
        ("rune.accounts", acc[0], "changed"): ["display_name"],
        ("rune.accounts", acc[1], "changed"): ["timezone"],
        ("rune.accounts", acc[2], "changed"): ["secondary_role_ids"],
        ("rune.scripts", script, "changed"): ["settings"],
    }
    by = {t.target: t for t in report.tables}
    assert by["rune.licenses"].quarantined_by_target == 1
    assert report.status == "failed" and not report.passed
    nulls = next(d for d in by["rune.accounts"].differences if d.source_key == acc[1]).columns[0]
    assert (nulls.source, nulls.target) == (None, "")
    name = next(d for d in by["rune.accounts"].differences if d.source_key == acc[0]).columns[0]
    assert "***" in name.source and "***" in name.target  # personal data masked
    for text in (render_html(report), render_markdown(report), render_csv(report)):
        assert str(lic[4]) in text
        assert SECRET_CANARY not in text


def test_keyed_reconcile_compares_only_the_given_keys(world, target, tmp_path):
    lic = _column(target, "SELECT legacy_license_id FROM rune.licenses ORDER BY 1 LIMIT 4")
    for key in (lic[0], lic[1]):
        _pg(
            target,
            (
                "UPDATE rune.licenses SET price_paid_minor = price_paid_minor + 1 "
                "WHERE legacy_license_id = %s",
                (key,),
            ),
        )
    settings = _settings(world, target, tmp_path)
    named = [lic[0], lic[2], lic[3]]  # one damaged row, two intact; lic[1] is not named
    report = run_reconcile(
        settings, ReconcileOptions(keys={"rune.licenses": named}, quality=False, settle_rounds=0)
    )
    found = [(d.table, d.source_key, d.kind) for t in report.tables for d in t.differences]
    assert found == [("rune.licenses", lic[0], "changed")]
    by = {t.target: t for t in report.tables}
    assert by["rune.licenses"].expected_rows == by["rune.licenses"].target_rows == len(named)
    assert by["rune.licenses"].matched == len(named) - 1
    assert all(t.expected_rows == 0 for name, t in by.items() if name != "rune.licenses")
    assert report.provenance.arguments["keys"] == {"rune.licenses": len(named)}
    nothing = run_reconcile(settings, ReconcileOptions(keys={}, quality=False, settle_rounds=0))
    assert nothing.status == "clean"
    assert all(t.expected_rows == t.target_rows == t.chunks == 0 for t in nothing.tables)


def test_dedup_losers_are_exposed_and_compared_with_the_keys_if_asked(world, target, tmp_path):
    losers = set(
        _column(
            target,
            "SELECT legacy_member_id FROM rune.accounts "
            "WHERE NOT can_login AND legacy_member_id IS NOT NULL",
        )
    )
    assert losers, "the sample world has no case-variant email pair"
    loser = min(losers)
    other = _one(target, "SELECT min(legacy_member_id) FROM rune.accounts WHERE can_login")[0]
    _pg(
        target,
        (
            "UPDATE rune.accounts SET post_count = post_count + 1 WHERE legacy_member_id = %s",
            (loser,),
        ),
    )
    settings = _settings(world, target, tmp_path)
    keyed = ReconcileOptions(keys={"rune.accounts": [other]}, quality=False, settle_rounds=0)
    named_only = run_reconcile(settings, keyed)
    assert named_only.status == "clean"
    accounts = next(t for t in named_only.tables if t.target == "rune.accounts")
    assert accounts.dedup_losers == losers  # planned even though only one key is compared
    assert "dedup_losers" not in json.dumps(named_only.as_dict())  # not a finding
    with_losers = run_reconcile(settings, dataclasses.replace(keyed, keyed_losers=True))
    found = [(d.table, d.source_key, d.kind) for t in with_losers.tables for d in t.differences]
    assert found == [("rune.accounts", loser, "changed")]
    accounts = next(t for t in with_losers.tables if t.target == "rune.accounts")
    assert accounts.expected_rows == len(losers) + 1
    assert with_losers.provenance.arguments["keyed_losers"] is True
    # A full compare across worker processes: the parent planned them, and exposes them.
    full = run_reconcile(
        settings,
        dataclasses.replace(
            COMPARE_MODES["three-workers"], tables=("rune.accounts",), quality=False
        ),
    )
    assert [t.dedup_losers for t in full.tables if t.target == "rune.accounts"] == [losers]


def test_cli_exit_codes_fail_on_and_sample(world, target, tmp_path):
    env = {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": world["forums_url"],
        "RUNESHIFT_REPO_URL": world["repo_url"],
        "RUNESHIFT_POSTGRES_URL": target,
        "RUNESHIFT_HOME": str(tmp_path),
    }
    cmd = [
        sys.executable,
        "-m",
        "runeshift.cli",
        "reconcile",
        "--no-quality",
        "--report-dir",
        str(tmp_path / "r"),
    ]
    clean = subprocess.run([*cmd, "--output", "json"], env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]
    doc = json.loads(clean.stdout)
    assert doc["schema_version"] == "1" and doc["status"] == "clean"
    assert {
        "tool_version",
        "mapping_checksum",
        "source_positions",
        "target_lsn_start",
        "started_at",
        "finished_at",
        "invoked_by",
    } <= set(doc["provenance"])
    _pg(
        target,
        (
            "UPDATE rune.reviews SET rating = 1 + rating % 5 WHERE legacy_review_id = (SELECT min(legacy_review_id) FROM rune.reviews)",
            (),
        ),
    )
    failed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "HTML report:" in failed.stderr
    tolerated = subprocess.run(
        [*cmd, "--fail-on", "changed=1"], env=env, capture_output=True, text=True
    )
    assert tolerated.returncode == 0, tolerated.stderr[-2000:]
    sampled = subprocess.run(
        [*cmd, "--sample", "0.2", "--tables", "licenses", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    doc = json.loads(sampled.stdout)
    assert doc["sample"] == 0.2 and doc["tables"][0]["sampled"] is True
    assert 0 < doc["tables"][0]["counts"]["expected_rows"] < 9000
    usage = subprocess.run([*cmd, "--fail-on", "bogus=1"], env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (scripts/setup.sh installs it)",
)
def test_html_report_renders_its_summary_in_headless_chromium(world, target, tmp_path):
    _pg(
        target,
        (
            "DELETE FROM rune.reviews WHERE legacy_review_id = (SELECT min(legacy_review_id) FROM rune.reviews)",
            (),
        ),
    )
    report = run_reconcile(
        _settings(world, target, tmp_path), ReconcileOptions(tables=("reviews", "roles"))
    )
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    shot = tmp_path / "report.png"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'id="summary"' in dom.stdout and "rune.reviews" in dom.stdout and "failed" in dom.stdout
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a real, non-blank page
    keep = os.environ.get("RUNESHIFT_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
