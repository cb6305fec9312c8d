"""What both sandbox servers share: finding binaries, free ports, waiting, privilege drop."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runeshift.errors import FatalError, MissingBinaryError


def find_binary(name: str, *, search: Sequence[str] = (), install_hint: str) -> Path:
    """Locate ``name`` on PATH or in ``search`` folders (globs allowed)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for pattern in search:
        for candidate in sorted(Path("/").glob(pattern.lstrip("/")), reverse=True):
            if (candidate / name).is_file():
                return candidate / name
    raise MissingBinaryError(f"'{name}' was not found on PATH; {install_hint}")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log: Path | None) -> None:
    """Poll ``check`` until true; on timeout raise with the tail of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise FatalError(f"{what} did not happen within {timeout:.0f}s{tail}")


def stop_pid(pid: int | None, *, timeout: float = 30.0, hard: bool = False) -> None:
    """Send SIGTERM (or SIGKILL when ``hard``) and wait for the process to go."""
    if not pid_alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def service_user(name: str) -> tuple[int, int] | None:
    """(uid, gid) to drop to when running as root, or None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise MissingBinaryError(
            f"running as root needs a '{name}' system user to own the server's files; "
            f"install the server package (it creates the user) or run as an ordinary user"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def run_as(argv: list[str], user: tuple[int, int] | None, **kwargs: object) -> list[str]:
    """Prefix ``argv`` so it runs as ``user`` (uid, gid) when given."""
    if user is None:
        return argv
    uid, gid = user
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]


def check_traversable(path: Path, user: tuple[int, int] | None) -> None:
    """Fail clearly when a server user could not reach ``path``."""
    if user is None:
        return
    for parent in [path, *path.parents]:
        if parent.exists() and not (parent.stat().st_mode & 0o001):
            raise FatalError(
                f"{parent} is not searchable by other users, so the database server "
                f"(run as an unprivileged user) cannot reach {path}; chmod o+x {parent} "
                f"or set RUNESHIFT_HOME to a folder under /tmp"
            )


def run_checked(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise FatalError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
