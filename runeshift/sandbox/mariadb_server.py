"""A throwaway MariaDB (or MySQL) server in a folder, configured for change capture.

Binlog settings are the ones the catch-up stage needs: ROW format, FULL row
image, FULL row metadata (column names in the binlog), a server id and GTIDs.
The server runs as root with ``--user=root`` (mariadbd allows it) so its files
stay removable by whoever started it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pymysql

from runeshift.sandbox.server_process import (
    find_binary,
    pid_alive,
    port_open,
    run_checked,
    stop_pid,
    wait_until,
)

INSTALL_HINT = "install MariaDB with 'apt-get install -y mariadb-server' (Debian/Ubuntu)"
SEARCH = ("/usr/sbin", "/usr/local/mysql/bin")
USER = "runeshift"


@dataclass
class MariaDBServer:
    """One mariadbd process owned by the sandbox."""

    root: Path
    port: int
    password: str
    server_id: int = 1

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "error.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "mariadbd.pid"

    @property
    def socket(self) -> Path:
        return self.root / "mariadbd.sock"

    def url(self, database: str = "") -> str:
        return f"mysql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_up(self) -> bool:
        return pid_alive(self.pid()) and port_open(self.port)

    def initialise(self) -> None:
        """Create the data directory (once) and the runeshift user."""
        install = find_binary("mariadb-install-db", search=SEARCH, install_hint=INSTALL_HINT)
        self.root.mkdir(parents=True, exist_ok=True)
        run_checked(
            [
                str(install),
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--user=root" if os.geteuid() == 0 else f"--user={os.getlogin()}",
            ],
            what="mariadb-install-db",
        )

    def start(self) -> None:
        mariadbd = find_binary("mariadbd", search=SEARCH, install_hint=INSTALL_HINT)
        args = [
            str(mariadbd),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log}",
            f"--server-id={self.server_id}",
            f"--log-bin={self.root / 'binlog' / 'mysql-bin'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--sql-mode=",
            "--skip-name-resolve",
            "--max-allowed-packet=256M",
            "--innodb-buffer-pool-size=512M",
            "--innodb-log-file-size=512M",
            "--max-connections=500",
            "--character-set-server=latin1",
            "--collation-server=latin1_swedish_ci",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        (self.root / "binlog").mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        # setsid --fork detaches the server from us entirely: it outlives this
        # process (the sandbox is shared by later commands) and leaves no child
        # for Python to reap or warn about.
        subprocess.run(
            ["setsid", "--fork", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        wait_until(
            lambda: self.pid() is not None and port_open(self.port),
            timeout=60,
            what=f"MariaDB starting on port {self.port}",
            log=self.log,
        )

    def create_user(self) -> None:
        """Create the password-protected account every URL uses (idempotent)."""
        conn = pymysql.connect(unix_socket=str(self.socket), user="root")
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY %s",
                        (self.password,),
                    )
                    cur.execute(f"GRANT ALL ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION")
        finally:
            conn.close()

    def stop(self, *, hard: bool = False) -> None:
        stop_pid(self.pid(), hard=hard)
