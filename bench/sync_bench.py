"""Catch-up benchmark: heartbeat lag under steady traffic, and backlog catch-up rate.

Usage (uses the sandbox servers, or the RUNESHIFT_* settings):

    uv run python bench/sync_bench.py --scale 2 --rates 200,1000,5000 --seconds 20 \
        --backlog 1000000 --out bench/results/sync.json

1. Builds a legacy world, backfills it into a fresh Postgres database.
2. For each rate: runs ``runeshift sample traffic --rate R`` in a *separate process* (so the
   writer does not share the follower's GIL) while the follower runs in this process, and
   records every heartbeat lag (write on MariaDB -> commit on Postgres, one monotonic clock).
3. Backlog: stops the follower, writes ``--backlog`` row changes (bulk UPDATEs over distinct
   keys of licenses and members, plus traffic), then times ``until_caught_up``. Also times
   the binlog reader alone over the same backlog (decode only) for comparison.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract.binlog_reader import BinlogReader  # noqa: E402
from extract.snapshot_reader import BinlogPosition  # noqa: E402
from load.target_schema import upgrade  # noqa: E402
from runeshift.backfill import run_backfill  # noqa: E402
from runeshift.connections import mysql_connect  # noqa: E402
from runeshift.heartbeat import HEARTBEAT_TABLE  # noqa: E402
from runeshift.sample.legacy_world import generate_legacy_world  # noqa: E402
from runeshift.sandbox import Sandbox  # noqa: E402
from runeshift.settings import Settings, runeshift_home  # noqa: E402
from runeshift.sync import SyncOptions, _decoders, run_sync  # noqa: E402
from runeshift.sync_metrics import SyncMetrics, quantile  # noqa: E402
from transform.mapping_loader import load_mappings  # noqa: E402


def _servers() -> tuple[str, str]:
    box = Sandbox(runeshift_home())
    status = box.up()
    mariadb, postgres = status.servers
    return mariadb.url, postgres.url


def _fresh_pg(server_url: str) -> str:
    db = f"syncbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = server_url.rsplit("/", 1)[0] + "/" + db
    upgrade(url)
    return url


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": settings.forums_url,
        "RUNESHIFT_REPO_URL": settings.repo_url,
        "RUNESHIFT_POSTGRES_URL": settings.postgres_url,
    }


def _follow(settings: Settings, metrics: SyncMetrics, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=run_sync, args=(settings,), kwargs={"stop": stop, "metrics": metrics}, daemon=True
    )
    thread.start()
    return thread


def lag_at_rate(settings: Settings, rate: int, seconds: float) -> dict[str, Any]:
    metrics = SyncMetrics()
    stop = threading.Event()
    follower = _follow(settings, metrics, stop)
    time.sleep(3)  # warm-up: connect, build dedup indexes, drain anything pending
    for m in metrics.sources.values():
        m.lags.clear()
    applied_before = sum(m.changes for m in metrics.sources.values())
    started = time.monotonic()
    traffic = subprocess.run(
        [
            sys.executable,
            "-m",
            "runeshift.cli",
            "sample",
            "traffic",
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--seed",
            str(rate),
            "--json",
        ],
        env=_env(settings),
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    time.sleep(2)
    stop.set()
    follower.join(120)
    lags = [lag for m in metrics.sources.values() for lag in m.lags]
    written = json.loads(traffic.stdout)
    return {
        "target_rate": rate,
        "achieved_write_rate": written["writes_per_second"],
        "writes": written["writes"],
        "seconds": round(elapsed, 1),
        "changes_applied": sum(m.changes for m in metrics.sources.values()) - applied_before,
        "heartbeats": len(lags),
        "lag_p50_s": quantile(lags, 0.5),
        "lag_p99_s": quantile(lags, 0.99),
        "lag_max_s": max(lags) if lags else None,
    }


def _master(url: str) -> BinlogPosition:
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    conn.close()
    return BinlogPosition(str(row[0]), int(row[1]), "")


def write_backlog(settings: Settings, changes: int) -> int:
    """Bulk UPDATEs over distinct keys (each statement touches every row once)."""
    done = 0
    repo = mysql_connect(settings.repo_url)
    forums = mysql_connect(settings.forums_url)
    with repo.cursor() as r, forums.cursor() as f:
        while done < changes:
            r.execute("UPDATE licenses SET refunded = 1 - refunded")
            done += r.rowcount
            f.execute("UPDATE core_members SET member_posts = member_posts + 1")
            done += f.rowcount
    repo.close()
    forums.close()
    return done


def _cpu() -> float:
    """User + system CPU seconds of this process (its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def library_only(url: str, start: BinlogPosition, end: BinlogPosition) -> dict[str, Any]:
    """python-mysql-replication alone over the same range: every row image of the database
    decoded to a dict (the anchor: no runeshift code on the path)."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    from extract.binlog_row_decoder import install_raw_strings
    from runeshift.connections import parse_mysql_url

    install_raw_strings()  # latin1 mojibake fails the library's default cp1252 decode
    target = parse_mysql_url(url)
    stream = BinLogStreamReader(
        connection_settings={
            "host": target.host,
            "port": target.port,
            "user": target.user,
            "passwd": target.password,
            "connect_timeout": 10,
        },
        server_id=7778,
        resume_stream=True,
        blocking=True,
        slave_heartbeat=0.5,
        log_file=start.file,
        log_pos=start.position,
        only_events=[
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
            XidEvent,
            QueryEvent,
            HeartbeatLogEvent,
        ],
        only_schemas=[target.database],
        is_mariadb=True,
        enable_logging=False,
    )
    rows = 0
    cpu0, started = _cpu(), time.monotonic()
    for event in stream:
        if isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
            rows += len(event.rows)
        elif (stream.log_file, stream.log_pos) >= (end.file, end.position):
            break
    seconds, cpu = time.monotonic() - started, _cpu() - cpu0
    stream.close()
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "cpu_s_per_10k": round(cpu / rows * 10_000, 3) if rows else None,
    }


def decode_only(
    settings: Settings,
    source: str,
    url: str,
    start: BinlogPosition,
    end: BinlogPosition,
    profile: str = "",
) -> dict[str, Any]:
    from extract.binlog_source_lookup import SourceLookup
    from runeshift.connections import parse_mysql_url

    database = parse_mysql_url(url).database
    schema = SourceLookup(url, database).schema()
    decoders = _decoders(load_mappings(), source, schema)
    reader = BinlogReader(
        source,
        url,
        database,
        decoders,
        heartbeat_table=HEARTBEAT_TABLE,
        server_id=7777,
        stop=lambda: False,
    )
    rows = 0
    profiler = cProfile.Profile() if profile else None
    cpu0, started = _cpu(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    for txn in reader.transactions(start):
        rows += len(txn.changes)
        if (txn.position.file, txn.position.position) >= (end.file, end.position):
            break
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    seconds, cpu = time.monotonic() - started, _cpu() - cpu0
    return {
        "source": source,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "cpu_s_per_10k": round(cpu / rows * 10_000, 3) if rows else None,
        "library_alone": library_only(url, start, end),
    }


def backlog(settings: Settings, changes: int, profile: str = "") -> dict[str, Any]:
    # Bring the follower up to date first, so the backlog is exactly what we write next.
    run_sync(settings, options=SyncOptions(until_caught_up=True))
    starts = {"forums": _master(settings.forums_url), "repo": _master(settings.repo_url)}
    t0 = time.monotonic()
    written = write_backlog(settings, changes)
    write_seconds = time.monotonic() - t0
    ends = {"forums": _master(settings.forums_url), "repo": _master(settings.repo_url)}
    metrics = SyncMetrics()
    profiler = cProfile.Profile() if profile else None
    cpu0, t1 = _cpu(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    result = run_sync(settings, options=SyncOptions(until_caught_up=True), metrics=metrics)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    seconds, cpu = time.monotonic() - t1, _cpu() - cpu0
    decode = [
        decode_only(
            settings,
            "repo",
            settings.repo_url,
            starts["repo"],
            ends["repo"],
            profile and profile + ".decode-repo",
        ),
        decode_only(settings, "forums", settings.forums_url, starts["forums"], ends["forums"]),
    ]
    return {
        "row_changes": written,
        "write_seconds": round(write_seconds, 1),
        "catch_up_seconds": round(seconds, 1),
        "changes_applied": result.changes_applied,
        "catch_up_changes_per_second": round(result.changes_applied / seconds),
        "catch_up_cpu_s_per_10k": round(cpu / max(1, result.changes_applied) * 10_000, 3),
        "load_average": os.getloadavg()[0],
        "batches": metrics.batches,
        "decode_only": decode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--rates", default="200,1000,5000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the world (legacy databases + backfilled target) of an earlier run at this "
        "scale under $RUNESHIFT_HOME instead of generating and backfilling a new one",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="write a cProfile of the backlog catch-up (this process only) to this file",
    )
    args = parser.parse_args()
    os.environ.setdefault("RUNESHIFT_HOME", tempfile.mkdtemp(prefix="syncbench-"))
    mysql_url, pg_server = _servers()
    saved = Path(os.environ["RUNESHIFT_HOME"]) / f"sync-bench-world-{args.scale:g}.json"
    if args.reuse and saved.exists():
        settings = Settings(**json.loads(saved.read_text()))
    else:
        tag = uuid.uuid4().hex[:6]
        forums, repo = f"sb_forums_{tag}", f"sb_repo_{tag}"
        generate_legacy_world(mysql_url, scale=args.scale, seed=1, forums_db=forums, repo_db=repo)
        pg = _fresh_pg(pg_server)
        settings = Settings(
            forums_url=mysql_url + forums,
            repo_url=mysql_url + repo,
            postgres_url=pg,
            staging=str(Path(os.environ["RUNESHIFT_HOME"]) / "staging"),
        )
        run_backfill(settings)
        world = {k: getattr(settings, k) for k in ("forums_url", "repo_url", "postgres_url")}
        saved.write_text(json.dumps({**world, "staging": settings.staging}))
    report: dict[str, Any] = {
        "scale": args.scale,
        "cpus": os.cpu_count(),
        "lag": [],
        "backlog": None,
    }
    for rate in [int(r) for r in args.rates.split(",") if r]:
        report["lag"].append(lag_at_rate(settings, rate, args.seconds))
        print(json.dumps(report["lag"][-1]), flush=True)
    if args.backlog:
        report["backlog"] = backlog(settings, args.backlog, args.profile)
        print(json.dumps(report["backlog"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
