"""Exit codes: 0 ok, 1 check failed, 2 usage or runtime error, with no traceback for user errors."""

from __future__ import annotations

import json
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


def test_a_command_loads_only_its_own_module(tmp_path):
    """``runeshift config show`` does not import the cutover's modules; ``--help`` and an
    unknown command still see every command."""
    probe = (
        "import json, sys; from runeshift import cli; sys.argv = ['runeshift', *sys.argv[1:]]\n"
        "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('LOADED', json.dumps(sorted(m for m in sys.modules "
        "if m.startswith('runeshift.commands.'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNESHIFT_")}
    env["RUNESHIFT_HOME"] = str(tmp_path)

    def loaded(*args: str) -> tuple[list[str], str]:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("LOADED"))
        return json.loads(line.removeprefix("LOADED ")), proc.stdout + proc.stderr

    modules, _ = loaded("--debug", "config", "show")
    assert modules == ["runeshift.commands.config_cmd", "runeshift.commands.registry"]
    modules, _ = loaded("--help")
    assert "runeshift.commands.cutover_cmd" in modules and "runeshift.commands.drill_cmd" in modules
    modules, out = loaded("no-such-command")
    assert "No such command" in out
    assert len(modules) == 14  # the registry and all 13 commands
