"""A throwaway PostgreSQL server in a folder, with logical decoding enabled.

PostgreSQL refuses to run as root, so when runeshift runs as root the cluster
is created and started as the ``postgres`` system user (files chowned to it).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runeshift.sandbox.server_process import (
    check_traversable,
    find_binary,
    pid_alive,
    port_open,
    run_as,
    run_checked,
    service_user,
    stop_pid,
    wait_until,
)

INSTALL_HINT = "install PostgreSQL with 'apt-get install -y postgresql' (Debian/Ubuntu)"
SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
USER = "runeshift"
DATABASE = "rune"

CONFIG = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_replication_slots": "16",
    "max_wal_senders": "16",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "timezone": "'UTC'",
    "log_min_messages": "warning",
}


@dataclass
class PostgresServer:
    """One postgres cluster owned by the sandbox."""

    root: Path
    port: int
    password: str

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        return str(find_binary(name, search=SEARCH, install_hint=INSTALL_HINT))

    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def is_up(self) -> bool:
        return pid_alive(self.pid()) and port_open(self.port)

    def initialise(self) -> None:
        user = service_user("postgres")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        check_traversable(self.root, user)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if user is not None:
            os.chown(self.root, *user)
            os.chown(pwfile, *user)
        run_checked(
            run_as(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                user,
            ),
            what="initdb",
        )
        pwfile.unlink()
        lines = [f"{key} = {value}" for key, value in CONFIG.items()]
        lines.append(f"unix_socket_directories = '{self.datadir}'")
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n# runeshift sandbox\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        user = service_user("postgres")
        argv = [
            self._bin("pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log),
            "-o",
            f"-p {self.port}",
            "-w",
            "-t",
            "60",
            "start",
        ]
        if user is not None and self.log.exists():
            os.chown(self.log, *user)
        subprocess.run(
            run_as(argv, user),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            start_new_session=True,
        )
        wait_until(
            lambda: port_open(self.port),
            timeout=60,
            what=f"PostgreSQL starting on port {self.port}",
            log=self.log,
        )
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self, *, hard: bool = False) -> None:
        if hard:
            stop_pid(self.pid(), hard=True)
            return
        if self.is_up():
            run_checked(
                run_as(
                    [self._bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                    service_user("postgres"),
                ),
                what="pg_ctl stop",
            )
        stop_pid(self.pid())
