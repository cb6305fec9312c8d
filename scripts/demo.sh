#!/usr/bin/env bash
# The demo: the whole migration on sample data, on throwaway local servers.
# Each stage prints what it did; the sandbox stays up afterwards for poking
# around (`make clean` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
rs=.venv/bin/runeshift

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

step "1. Throwaway MariaDB (ROW binlog) and PostgreSQL (wal_level=logical)"
$rs sandbox up

step "2. The legacy world: tribot_forums + tribot_repo at scale $scale, every quirk included"
$rs sample legacy --scale "$scale" --seed 42

step "3. The Rune target schema and runeshift's control schema (Alembic)"
$rs schema upgrade
$rs schema current

step "4. Does every legacy column have a rule? (schema-drift guard)"
$rs mappings check

step "5. Backfill: consistent snapshot -> Parquet staging -> mappings -> COPY"
$rs backfill

step "Done"
echo "Target: $($rs sandbox status --json | python3 -c 'import json,sys; print([s["url"] for s in json.load(sys.stdin)["servers"] if s["name"]=="postgres"][0].split("@")[-1])')"
echo "Try:    $rs mappings show accounts    |    $rs config show    |    make clean"
