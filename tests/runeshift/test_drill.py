"""``runeshift drill`` end to end, as a user runs it: its own sandbox, the sample world, the
services behind HAProxy, load at a moderate rate, the whole cutover, the scorecard.

Issue 7: "a drill at moderate load passes all bounds". This run also uses ``--chaos
service``: the Rune service is killed just before reads move to it, so the scorecard only
passes when the services-ready gate refused that advance and the cutover then went on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runeshift.sandbox import Sandbox


@pytest.mark.slow
def test_drill_at_moderate_load_with_a_killed_service_passes_every_bound():
    home = Path(tempfile.mkdtemp(prefix="runeshift-drill-"))
    home.chmod(0o755)  # the postgres user must reach its data dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNESHIFT_")}
    env["RUNESHIFT_HOME"] = str(home)
    try:
        args = ["drill", "--rate", "30", "--scale", "0.05", "--chaos", "service", "--json"]
        done = subprocess.run(
            [sys.executable, "-m", "runeshift.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode in (0, 1), done.stderr[-3000:]
        card = json.loads(done.stdout)
        broken = [b for b in card["bounds"] if not b["ok"]]
        assert done.returncode == 0 and card["passed"], (broken, card["failures"])
        assert card["kills"] == 1 and card["chaos"] == "service"
        assert card["failed_requests"] == 0 and card["lost_writes"] == 0
        assert card["acknowledged_writes"] > 0 and card["requests"] > 100
        assert card["reconcile"] == "clean"
        assert set(card["lag_at_stage_s"]) >= {"verified", "reads_on_rune", "complete"}
        assert list(card["switches"]) == ["to_rune"]
        assert 0 < card["switches"]["to_rune"]["fence_hold_s"] == card["fence_hold_s"]
    finally:
        Sandbox(home).down()
        shutil.rmtree(home, ignore_errors=True)
