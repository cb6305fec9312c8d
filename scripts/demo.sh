#!/usr/bin/env bash
# The demo: the whole migration on sample data, on throwaway local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
scale="${1:-1}"
rs=.venv/bin/runeshift
$rs sandbox up
$rs sandbox status
