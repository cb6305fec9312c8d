"""Starting and stopping the world's processes (haproxy, the two services) by pid.

Each runs in its own session so it outlives the command that started it (``runeshift
services up`` returns while they keep serving) and is stopped later by pid from the state
file. A process started by *this* Python process is also reaped here on stop: otherwise it
would linger as a zombie, which still answers ``kill(pid, 0)`` and looks alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from runeshift.sandbox.server_process import pid_alive, stop_pid

_children: dict[int, subprocess.Popen[bytes]] = {}
_lock = threading.Lock()


def spawn(argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached, output appended to ``log_path``; its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    with _lock:
        _children[proc.pid] = proc
    return proc.pid


def exited(pid: int) -> bool:
    """True once the process is gone (a child of ours that exited counts, zombie or not)."""
    with _lock:
        proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is not None
    return not pid_alive(pid)


def kill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone (reaped, when it is our child)."""
    with _lock:
        proc = _children.pop(pid, None)
    if proc is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return
    proc.kill()
    proc.wait(10)


def stop(pid: int | None, *, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; reaps our own children."""
    if not pid:
        return
    with _lock:
        proc = _children.pop(pid, None)
    if proc is None:
        stop_pid(pid, timeout=timeout)
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
