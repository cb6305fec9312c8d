"""Exit codes: 0 ok, 1 check failed, 2 usage or runtime error, with no traceback for user errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args: str, home: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNESHIFT_")}
    env["RUNESHIFT_HOME"] = home
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--help",), 0, "sandbox"),
        (("backfill", "--no-such-flag"), 2, "No such option"),
        (("backfill",), 2, "setting 'postgres_url' is not set"),
        (("mappings", "show", "nonexistent"), 2, "no mapping for target table 'nonexistent'"),
        (("sandbox", "status"), 1, "no sandbox"),
    ],
    ids=["help", "usage-error", "missing-setting", "unknown-table", "check-failed"],
)
def test_exit_codes(args, code, says, tmp_path):
    proc = _run(*args, home=str(tmp_path))
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_the_pipeline_groups(tmp_path):
    text = _run("--help", home=str(tmp_path)).stdout
    for group in ("config", "sandbox", "sample", "schema", "mappings", "backfill"):
        assert group in text
