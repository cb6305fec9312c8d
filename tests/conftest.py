"""Session-wide real servers: one sandbox (MariaDB + PostgreSQL) for the whole run.

The sandbox lives in a fresh folder under /tmp (world-searchable, so the
``postgres`` user can reach it when the suite runs as root) and is removed at
the end. Tests that need isolation create their own databases on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runeshift.sandbox import Sandbox, SandboxStatus
from runeshift.settings import Settings


@pytest.fixture(scope="session")
def sandbox_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="runeshift-test-"))
    home.chmod(0o755)
    previous = os.environ.get("RUNESHIFT_HOME")
    os.environ["RUNESHIFT_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("RUNESHIFT_HOME", None)
    else:
        os.environ["RUNESHIFT_HOME"] = previous
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox(sandbox_home: Path) -> Iterator[SandboxStatus]:
    box = Sandbox(sandbox_home)
    status = box.up()
    yield status
    box.down()


@pytest.fixture(scope="session")
def mysql_url(sandbox: SandboxStatus) -> str:
    """Server URL (no database) of the sandbox MariaDB."""
    return sandbox.servers[0].url


@pytest.fixture(scope="session")
def pg_server_url(sandbox: SandboxStatus) -> str:
    return sandbox.servers[1].url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_server_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3-compatible HTTP endpoint (moto's server mode) with a bucket 'migration'."""
    import boto3
    from moto.server import ThreadedMotoServer

    from runeshift.sandbox.server_process import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="migration")
    yield endpoint
    server.stop()


@contextlib.contextmanager
def backfilled_world(
    mysql_url: str, pg_server_url: str, home: Path, *, forums_db: str, repo_db: str, seed: int
) -> Iterator[Settings]:
    """A generated legacy world (scale 0.1) in its own databases, backfilled into a fresh
    target database that is dropped afterwards; yields the settings pointing at both."""
    from load.target_schema import upgrade
    from runeshift.backfill import run_backfill
    from runeshift.sample.legacy_world import generate_legacy_world

    generate_legacy_world(mysql_url, scale=0.1, seed=seed, forums_db=forums_db, repo_db=repo_db)
    name = f"{forums_db.split('_')[0]}_{uuid.uuid4().hex[:10]}"
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = pg_server_url.rsplit("/", 1)[0] + "/" + name
    upgrade(target)
    settings = Settings(
        forums_url=mysql_url + forums_db,
        repo_url=mysql_url + repo_db,
        postgres_url=target,
        staging=str(home / "staging"),
        home=home,
    )
    run_backfill(settings)
    try:
        yield settings
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
