"""Archive of the legacy world (local folder and S3 via moto's server mode) and its verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from runeshift.archive import create_archive, verify_archive
from runeshift.connections import mysql_connect
from runeshift.sample import SECRET_CANARY
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.secrets import Secret
from runeshift.settings import Settings

FORUMS, REPO = "ar_forums", "ar_repo"


@pytest.fixture(scope="module")
def legacy(mysql_url: str) -> dict[str, str]:
    generate_legacy_world(mysql_url, scale=0.2, seed=5, forums_db=FORUMS, repo_db=REPO)
    return {"forums": mysql_url + FORUMS, "repo": mysql_url + REPO}


def _settings(legacy: dict[str, str], staging: str, endpoint: str = "") -> Settings:
    return Settings(
        forums_url=legacy["forums"],
        repo_url=legacy["repo"],
        staging=staging,
        s3_endpoint_url=endpoint,
        shopify_token=Secret(""),
    )


def _export(folder: Path) -> Path:
    folder.mkdir()
    (folder / "orders_export.csv").write_text(
        "Name,Email,Total,Lineitem sku\n#1001,a@example.com,19.99,SCRIPT-12\n"
        "#1001,a@example.com,19.99,SLOTS-5\n"
    )
    return folder


def _count(url: str, db: str, table: str) -> int:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {db}.{table}")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_local_archive_counts_every_row_omits_secrets_and_verifies(legacy, mysql_url, tmp_path):
    settings = _settings(legacy, str(tmp_path / "staging"))
    result = create_archive(settings, archive_id="a1", shopify_export=_export(tmp_path / "x"))
    by_name = {t.name: t for t in result.tables}
    assert by_name["repo.licenses"].rows == _count(mysql_url, REPO, "licenses")
    assert by_name["forums.core_members"].rows == _count(mysql_url, FORUMS, "core_members")
    assert "members_pass_hash" in by_name["forums.core_members"].omitted_columns
    assert "repo.api_sessions" in result.omitted_tables
    assert by_name["shopify.orders_export"].rows == 2
    blob = b"".join(p.read_bytes() for p in (tmp_path / "staging").rglob("*.parquet"))
    assert SECRET_CANARY.encode() not in blob
    check = verify_archive(str(tmp_path / "staging"), "a1")
    assert check.ok, check.problems
    assert check.manifest_sha256 == result.manifest_sha256
    assert check.rows_checked == sum(t.rows for t in result.tables)


@pytest.mark.parametrize("tamper", ["edit_bytes", "delete_file", "add_file", "edit_manifest_rows"])
def test_verify_detects_a_tampered_archive(legacy, tmp_path, tamper):
    staging = tmp_path / "staging"
    create_archive(_settings(legacy, str(staging)), archive_id="a2")
    root = staging / "archive" / "a2"
    part = next((root / "legacy" / "repo" / "licenses").glob("*.parquet"))
    if tamper == "edit_bytes":
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0xFF
        part.write_bytes(bytes(data))
    elif tamper == "delete_file":
        part.unlink()
    elif tamper == "add_file":
        (root / "legacy" / "repo" / "licenses" / "part-999999.parquet").write_bytes(b"x")
    else:
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["tables"][0]["files"][0]["rows"] += 1
        manifest["tables"][0]["rows"] += 1
        (root / "manifest.json").write_text(json.dumps(manifest))
    check = verify_archive(str(staging), "a2")
    assert not check.ok
    kinds = {p.kind for p in check.problems}
    expected = {
        "edit_bytes": "checksum_mismatch",
        "delete_file": "missing_file",
        "add_file": "unlisted_file",
        "edit_manifest_rows": "row_count_mismatch",
    }[tamper]
    assert expected in kinds


def test_s3_archive_and_the_one_command_verify(legacy, s3_endpoint, tmp_path):
    settings = _settings(legacy, "s3://migration/audit", s3_endpoint)
    create_archive(settings, archive_id="a3")
    env = {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": legacy["forums"],
        "RUNESHIFT_REPO_URL": legacy["repo"],
        "RUNESHIFT_STAGING": "s3://migration/audit",
        "RUNESHIFT_S3_ENDPOINT_URL": s3_endpoint,
        "RUNESHIFT_HOME": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "runeshift.cli", "archive", "verify", "a3", "--json"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["ok"] is True
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket="migration", Prefix="audit/archive/a3/legacy/repo/")[
            "Contents"
        ]
    )
    s3.put_object(Bucket="migration", Key=key, Body=b"tampered")
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert {p["kind"] for p in json.loads(bad.stdout)["problems"]} >= {"checksum_mismatch"}
