"""``config show`` reports every setting and where it came from, and never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _show(env: dict[str, str], *args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "config", "show", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
    )


def test_secrets_are_masked_in_both_outputs(tmp_path, sandbox):
    (tmp_path / "runeshift.toml").write_text(
        '[runeshift]\nshopify_base_url = "http://127.0.0.1:9/"\n'
        'repo_url = "mysql://app:filepassword-123@db:3306/tribot_repo"\n'
    )
    env = {
        "RUNESHIFT_SHOPIFY_TOKEN": "shpat_supersecret-token",
        "RUNESHIFT_POSTGRES_URL": "postgresql://rune:envpassword-456@pg:5432/rune",
    }
    for args in ((), ("--json",)):
        proc = _show(env, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout + proc.stderr
        for secret in ("supersecret", "filepassword-123", "envpassword-456"):
            assert secret not in text
        sandbox_password = sandbox.servers[0].url.split(":")[2].split("@")[0]
        assert sandbox_password not in text
    shown = json.loads(_show(env, "--json", cwd=tmp_path).stdout)
    assert shown["repo_url"] == {"value": "mysql://app:***@db:3306/tribot_repo", "origin": "file"}
    assert shown["postgres_url"]["origin"] == "env"
    assert shown["shopify_token"]["value"] == "***"
    assert shown["forums_url"]["origin"] == "sandbox"


def test_unknown_setting_in_file_is_a_clear_error(tmp_path):
    (tmp_path / "runeshift.toml").write_text('postgress_url = "x"\n')
    proc = _show({}, cwd=tmp_path)
    assert proc.returncode == 2
    assert "postgress_url" in proc.stderr and "known settings" in proc.stderr
