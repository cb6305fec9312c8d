"""Every command in the runbooks' fenced blocks runs against the sandbox.

The runbooks are read in file order (pre-flight, backfill, ..., incidents) and each
``runeshift ...`` line inside a ```` ```sh ```` block is executed against a legacy world
of its own and a fresh Rune database, so a renamed command or flag fails here instead of
during an incident. Exit 1 ("a check failed") depends on state and is allowed; exit 2
(usage or runtime error) and tracebacks are not.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from runeshift.sample.legacy_world import generate_legacy_world

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
_BLOCK = re.compile(r"^\s*```sh\n(.*?)^\s*```", re.MULTILINE | re.DOTALL)


def runbook_commands() -> list[tuple[str, str]]:
    """(runbook file, command line) for every runeshift line in a sh block, in order."""
    out = []
    # Completing (which ends the reverse stream for good) comes after every other situation.
    for path in sorted(RUNBOOKS.glob("*.md"), key=lambda p: (p.name.startswith("07"), p.name)):
        for block in _BLOCK.findall(path.read_text()):
            for line in block.splitlines():
                line = line.strip()
                if line.startswith("runeshift "):
                    out.append((path.name, line))
    return out


def test_the_runbooks_have_commands_for_every_situation():
    names = {p.name for p in RUNBOOKS.glob("*.md")}
    for required in (
        "01-preflight.md",
        "02-backfill.md",
        "03-catch-up.md",
        "04-verification.md",
        "05-cutover-stages.md",
        "06-rollback.md",
        "rollback-from-soak.md",
        "07-complete-and-archive.md",
        "incident-follower-stuck.md",
        "incident-reverse-follower-stuck.md",
        "incident-lag-rising.md",
        "incident-reconcile-failing.md",
        "incident-proxy-down.md",
    ):
        assert required in names
    assert len(runbook_commands()) > 20


def test_every_runbook_command_runs(mysql_url, pg_url, tmp_path):
    tag = uuid.uuid4().hex[:6]
    forums, repo = f"rb_{tag}_forums", f"rb_{tag}_repo"
    generate_legacy_world(mysql_url, scale=0.2, seed=17, forums_db=forums, repo_db=repo)
    env = {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": mysql_url + forums,
        "RUNESHIFT_REPO_URL": mysql_url + repo,
        "RUNESHIFT_POSTGRES_URL": pg_url,
        "RUNESHIFT_STAGING": str(tmp_path / "staging"),
        "RUNESHIFT_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    cli = [sys.executable, "-m", "runeshift.cli"]
    # The services being cut over (Rune service, legacy stand-in, HAProxy) exist in
    # production; in the sandbox they are started for the cutover commands.
    up = subprocess.run([*cli, "services", "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr[-2000:]
    failures = []
    try:
        for runbook, line in runbook_commands():
            argv = [sys.executable, "-m", "runeshift.cli", *shlex.split(line)[1:]]
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
            )
            if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
                failures.append(
                    f"{runbook}: `{line}` exited {proc.returncode}: {proc.stderr[-800:]}"
                )
    finally:
        subprocess.run([*cli, "reverse", "stop"], env=env, capture_output=True)
        subprocess.run([*cli, "services", "down"], env=env, capture_output=True)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("runbook, line", runbook_commands(), ids=lambda v: str(v)[:60])
def test_every_runbook_command_parses(runbook, line):
    """Fast: each command's options are known to the CLI (``--help`` after them parses)."""
    argv = [sys.executable, "-m", "runeshift.cli", *shlex.split(line)[1:]]
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{runbook}: `{line}`: {proc.stderr[-500:]}"
