#!/usr/bin/env bash
# Benchmarks behind `make bench`; each one updates its section of BENCHMARKS.md.
# The sandbox lives under $RUNESHIFT_HOME (default .runeshift/bench), apart from the demo's;
# stop it with: RUNESHIFT_HOME=.runeshift/bench uv run runeshift sandbox down
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNESHIFT_HOME="${RUNESHIFT_HOME:-$PWD/.runeshift/bench}"

if ! command -v pgloader >/dev/null; then
  echo "installing pgloader (Debian package) for the comparison" >&2
  apt-get install -y pgloader
fi

# 250k then 1M rows of tribot_repo.licenses: the pair shows whether peak RSS stays flat.
for scale in 25 100; do
  uv run python bench/backfill_bench.py --scale "$scale" "$@"
done
uv run python bench/shopify_export_bench.py --orders 100000  # bulk vs paginated, ~15 min
