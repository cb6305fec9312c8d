"""Reconciliation benchmark: reladiff vs runeshift on a 1,000,000-row same-shape table with 5
planted differences, and runeshift on a mapped table (rune.licenses) in the same run.

Uses the servers of the current settings (``runeshift sandbox up``). Each contender runs in
its own process; wall time and the child's peak RSS (getrusage) are recorded. reladiff runs
through ``uv run --with 'reladiff[mysql,postgresql]'`` so it never enters the lock file.

    uv run python bench/reconcile_bench.py --rows 1000000 [--mapped]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from process_measure import run_measured

from runeshift.connections import mysql_connect, parse_mysql_url
from runeshift.settings import load_settings

DB = "rc_bench"
PLANTED = {
    100: "missing",
    200_000: "changed",
    400_000: "changed",
    600_000: "changed",
    10**9: "extra",
}
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

CHILD = """
import sys, json
from reconcile.plain_table_compare import PlainColumn, compare_plain_tables
cols = [PlainColumn('id','int'), PlainColumn('n','int'), PlainColumn('amount','numeric',2),
        PlainColumn('name','text'), PlainColumn('at','timestamp'), PlainColumn('note','text')]
d = compare_plain_tables(sys.argv[1], 'bench_plain', sys.argv[2], 'public.bench_plain', 'id', cols)
print(json.dumps({'missing': d.missing, 'extra': d.extra, 'changed': d.changed}))
"""


def _prepare(rows: int, mysql_server: str, pg_server: str) -> tuple[str, str]:
    my = mysql_connect(mysql_server)
    with my.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB} CHARACTER SET utf8mb4")
        cur.execute(f"USE {DB}")
        cur.execute(f"DROP TABLE IF EXISTS {DB}.bench_plain")
        cur.execute(
            f"CREATE TABLE {DB}.bench_plain (id BIGINT PRIMARY KEY, n INT NOT NULL, amount DECIMAL(12,2) NOT NULL, "
            "name VARCHAR(64) NOT NULL, at DATETIME(6) NOT NULL, note TEXT NULL) CHARACTER SET utf8mb4"
        )
        cur.execute(
            f"INSERT INTO {DB}.bench_plain SELECT seq, seq * 7 % 100000, (seq % 100000) / 100, "
            "CONCAT('name-', seq, '-\u00e9'), TIMESTAMPADD(SECOND, seq, '2020-01-01 00:00:00'), "
            f"IF(seq % 7 = 0, NULL, CONCAT('n', seq)) FROM seq_1_to_{rows}"
        )
    my.close()
    base = pg_server.rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    pg = f"{base}/{DB}"
    with psycopg.connect(pg) as conn:
        conn.execute(
            "CREATE TABLE bench_plain (id bigint PRIMARY KEY, n int NOT NULL, amount numeric(12,2) NOT NULL, "
            "name varchar(64) NOT NULL, at timestamp(6) NOT NULL, note text)"
        )
        conn.execute(
            "INSERT INTO bench_plain SELECT g, g * 7 %% 100000, ((g %% 100000) / 100.0)::numeric(12,2), "
            "'name-' || g || '-\u00e9', timestamp '2020-01-01' + g * interval '1 second', "
            "CASE WHEN g %% 7 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("DELETE FROM bench_plain WHERE id = 100")
        conn.execute("UPDATE bench_plain SET amount = amount + 0.01 WHERE id = 200000")
        conn.execute("UPDATE bench_plain SET name = name || 'x' WHERE id = 400000")
        conn.execute("UPDATE bench_plain SET at = at + interval '1 microsecond' WHERE id = 600000")
        conn.execute(
            "INSERT INTO bench_plain VALUES (1000000000, 1, 1.00, 'extra', '2020-01-01', NULL)"
        )
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE bench_plain")
    return mysql_server + DB, pg


def _timed(cmd: list[str], label: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Wall and CPU time of the command's process tree, and its peak RSS summed over the tree
    (the mapped compare runs worker processes) and of its largest process."""
    m = run_measured(cmd, label=f"reconcile-{label}", results=RESULTS, cwd=REPO, env=env)
    return {
        "seconds": round(m.seconds, 2),
        "cpu_seconds": round(m.cpu_seconds, 2),
        "peak_rss_mb": round(m.peak_tree_rss_mb, 1),
        "largest_process_rss_mb": round(m.peak_max_rss_mb, 1),
        "returncode": m.returncode,
        "stdout": m.stdout.read_text(errors="replace")[-4000:],
        "stderr": m.stderr.read_text(errors="replace")[-2000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mapped", action="store_true", help="also reconcile rune.licenses")
    args = parser.parse_args()
    settings = load_settings()
    mysql_server = settings.require("repo_url").rsplit("/", 1)[0] + "/"
    my_url, pg_url = _prepare(args.rows, mysql_server, settings.require("postgres_url"))
    t = parse_mysql_url(my_url)
    results: dict[str, object] = {
        "rows": args.rows,
        "planted": len(PLANTED),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    reladiff = [
        "uv",
        "run",
        "--quiet",
        "--with",
        "reladiff[mysql,postgresql]",
        "--",
        "python",
        "-m",
        "reladiff",
    ]
    subprocess.run([*reladiff, "--version"], capture_output=True)  # warm the uv cache, untimed
    # What 'uv run' and reladiff's import cost before it compares anything (in its time below).
    results["reladiff_startup"] = _timed([*reladiff, "--version"], "reladiff-startup")
    reladiff_args = [
        f"mysql://{t.user}:{t.password}@{t.host}:{t.port}/{DB}",
        "bench_plain",
        pg_url,
        "bench_plain",
        "-k",
        "id",
        *(arg for column in ("n", "amount", "name", "at", "note") for arg in ("-c", column)),
    ]
    # reladiff's defaults (one thread per database), and with two threads per database.
    results["reladiff"] = _timed([*reladiff, *reladiff_args], "reladiff")
    results["reladiff_2_threads"] = _timed([*reladiff, *reladiff_args, "-j", "2"], "reladiff-j2")
    results["runeshift_same_shape"] = _timed(
        [sys.executable, "-c", CHILD, my_url, pg_url], "runeshift-same-shape"
    )
    if args.mapped:
        # One process, then the default: the compare split by key across worker processes.
        for label, extra in (("one_process", ["--workers", "1"]), ("workers", [])):
            results[f"runeshift_mapped_licenses_{label}"] = _timed(
                [
                    sys.executable,
                    "-m",
                    "runeshift.cli",
                    "reconcile",
                    "--tables",
                    "licenses",
                    "--no-quality",
                    "--output",
                    "json",
                    *extra,
                ],
                f"mapped-{label}",
                env=dict(os.environ),
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"reconcile-{args.rows}.json"
    out.write_text(json.dumps(results, indent=2))
    for name, r in results.items():
        if isinstance(r, dict):
            print(
                f"{name}: {r['seconds']} s, CPU {r['cpu_seconds']} s, {r['peak_rss_mb']} MB "
                f"(largest process {r['largest_process_rss_mb']} MB), rc {r['returncode']}"
            )
    print(json.loads(results["runeshift_same_shape"]["stdout"] or "{}"))  # type: ignore[index]
    print(results["reladiff"]["stdout"][-800:], results["reladiff"]["stderr"][-800:])  # type: ignore[index]


if __name__ == "__main__":
    main()
