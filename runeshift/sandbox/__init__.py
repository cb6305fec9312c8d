"""Throwaway MariaDB + PostgreSQL servers for the demo, the tests and the benchmarks.

Design note: all state lives under ``<home>/sandbox`` (``state.json`` holds the
ports and generated passwords, mode 0600). ``up`` is idempotent: servers that
are running are left alone, stopped ones are started again on their ports (or a
new free port when the old one is taken). ``down`` stops both and removes the
folder. Other commands pick the URLs up through :mod:`runeshift.settings`.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runeshift.sandbox.mariadb_server import MariaDBServer
from runeshift.sandbox.postgres_server import PostgresServer
from runeshift.sandbox.server_process import free_port, port_open
from runeshift.secrets import mask_url

FORUMS_DB = "tribot_forums"
REPO_DB = "tribot_repo"


@dataclass(frozen=True)
class ServerStatus:
    name: str
    url: str
    up: bool
    pid: int | None
    port: int

    def as_dict(self, *, reveal: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url if reveal else mask_url(self.url),
            "up": self.up,
            "pid": self.pid,
            "port": self.port,
        }


@dataclass(frozen=True)
class SandboxStatus:
    root: Path
    exists: bool
    servers: tuple[ServerStatus, ...]
    settings: dict[str, str]

    @property
    def all_up(self) -> bool:
        return self.exists and all(s.up for s in self.servers)


class Sandbox:
    """The pair of local servers under ``home/sandbox``."""

    def __init__(self, home: Path) -> None:
        self.root = home / "sandbox"
        self.state_path = self.root / "state.json"

    def _load(self) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def _save(self, mariadb: MariaDBServer, postgres: PostgresServer) -> None:
        state = {
            "mariadb": {"port": mariadb.port, "password": mariadb.password},
            "postgres": {"port": postgres.port, "password": postgres.password},
            "settings": {
                "forums_url": mariadb.url(FORUMS_DB),
                "repo_url": mariadb.url(REPO_DB),
                "postgres_url": postgres.url(),
            },
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_path)

    def servers(self) -> tuple[MariaDBServer, PostgresServer] | None:
        state = self._load()
        if state is None:
            return None
        return (
            MariaDBServer(self.root / "mariadb", **state["mariadb"]),
            PostgresServer(self.root / "postgres", **state["postgres"]),
        )

    def up(self) -> SandboxStatus:
        """Start both servers, creating them on first use. Safe to call again."""
        existing = self.servers()
        if existing is None:
            mariadb = MariaDBServer(self.root / "mariadb", free_port(), secrets.token_urlsafe(18))
            postgres = PostgresServer(
                self.root / "postgres", free_port(), secrets.token_urlsafe(18)
            )
        else:
            mariadb, postgres = existing
        if not mariadb.datadir.exists():
            mariadb.initialise()
        if not mariadb.is_up():
            if port_open(mariadb.port):
                mariadb.port = free_port()
            mariadb.start()
            mariadb.create_user()
        if not postgres.datadir.exists():
            postgres.initialise()
        if not postgres.is_up():
            if port_open(postgres.port):
                postgres.port = free_port()
            postgres.start()
        self._save(mariadb, postgres)
        return self.status()

    def status(self) -> SandboxStatus:
        found = self.servers()
        state = self._load() or {}
        if found is None:
            return SandboxStatus(self.root, False, (), {})
        mariadb, postgres = found
        return SandboxStatus(
            self.root,
            True,
            (
                ServerStatus(
                    "mariadb", mariadb.url(), mariadb.is_up(), mariadb.pid(), mariadb.port
                ),
                ServerStatus(
                    "postgres", postgres.url(), postgres.is_up(), postgres.pid(), postgres.port
                ),
            ),
            dict(state.get("settings", {})),
        )

    def down(self) -> SandboxStatus:
        """Stop both servers and remove their data."""
        found = self.servers()
        if found is not None:
            mariadb, postgres = found
            mariadb.stop()
            postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        return self.status()
