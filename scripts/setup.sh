#!/usr/bin/env bash
# Installs what runeshift needs on a fresh Debian/Ubuntu machine, then the virtualenv
# from the lock file. Every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# mysqlclient (the C MySQL reader on the backfill's hot path) builds against these; gcc also
# builds runeshift's own column kernels (transform/_column_kernels.c).
[ -f /usr/include/mariadb/mysql.h ] || need_apt+=(libmariadb-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
# The reconciliation report's test opens the HTML report in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The proxy in front of the legacy stand-in and the Rune service (runeshift services up).
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "runeshift needs: ${need_apt[*]}. Install them with: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 2
  fi
  echo "installing ${need_apt[*]} from Debian packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
# Bytecode compiled at install, as pip does by default: with PYTHONDONTWRITEBYTECODE set
# (this machine sets it) every command otherwise compiles ~1,000 modules first (2.7 s for
# `runeshift --help`, 0.9 s with bytecode). Edited sources are recompiled in memory.
uv sync --frozen --quiet --compile-bytecode
.venv/bin/python -m compileall -q runeshift extract transform load reconcile cutover services >/dev/null
