"""Opening connections from setting URLs, one function per engine and driver.

URLs are ``mysql://user:pass@host:port/db`` and ``postgresql://...``; the
sqlalchemy dialect+driver is added here so settings stay driver-neutral.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pymysql.cursors

from runeshift.errors import ConfigError

if TYPE_CHECKING:
    import sqlalchemy as sa

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class MySQLTarget:
    host: str
    port: int
    user: str
    password: str
    database: str

    def connect_kwargs(self) -> dict[str, Any]:
        """PyMySQL's arguments. Over loopback TLS protects nothing, and PyMySQL builds a TLS
        context from the system CA store on every connect unless told not to: 29-50 ms of
        CPU each, which a service opening connections under load paid in full."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database or None,
            **self.tls_kwargs(),
        }
        return kwargs

    def tls_kwargs(self) -> dict[str, Any]:
        """``ssl_disabled`` over loopback, for every PyMySQL connection (binlog readers too)."""
        return {"ssl_disabled": True} if self.host in LOOPBACK_HOSTS else {}


def parse_mysql_url(url: str) -> MySQLTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise ConfigError(
            f"expected a mysql://user:password@host:port/database URL, got {parts.scheme}://..."
        )
    return MySQLTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
    )


def mysql_connect(
    url: str, *, database: str | None = None, streaming: bool = False, autocommit: bool = True
) -> pymysql.connections.Connection[Any]:
    """A PyMySQL connection; ``streaming`` gives an unbuffered cursor class.

    The session reads TIMESTAMP columns in UTC (``time_zone='+00:00'``) and runs
    with the legacy ``sql_mode=''`` so zero dates read back as written.
    """
    target = parse_mysql_url(url)
    kwargs = target.connect_kwargs()
    if database is not None:
        kwargs["database"] = database or None
    conn = pymysql.connect(
        **kwargs,
        charset="utf8mb4",
        autocommit=autocommit,
        cursorclass=pymysql.cursors.SSCursor if streaming else pymysql.cursors.Cursor,
        init_command="SET time_zone = '+00:00', sql_mode = ''",
        connect_timeout=10,
    )
    return conn


def pg_connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A psycopg 3 connection in UTC."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"expected a postgresql://user:password@host:port/database URL, got {url.split(':')[0]}://..."
        )
    conn = psycopg.connect(url, autocommit=autocommit, options="-c TimeZone=UTC")
    return conn


def sqlalchemy_url(url: str) -> str:
    """The sqlalchemy URL (dialect+driver) for a setting URL."""
    if url.startswith(("mysql://", "mariadb://")):
        return "mysql+pymysql://" + url.split("://", 1)[1]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    raise ConfigError(f"unsupported database URL scheme in {url.split('://')[0]}://...")


def engine(url: str) -> sa.Engine:
    import sqlalchemy as sa  # 0.27 s of import: only the commands that reflect pay it

    return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True)
