"""Wall time, CPU time and peak memory of a benchmarked command's whole process tree."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    """One process tree's run: wall seconds, peak RSS, exit code, where its output went."""

    seconds: float
    cpu_seconds: float
    peak_tree_rss_mb: float
    peak_max_rss_mb: float
    returncode: int
    stdout: Path
    stderr: Path


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def children_by_parent() -> dict[int, list[int]]:
    """Every live process's pid under its parent's (one /proc scan)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # the command name may hold spaces and parentheses: split after the last ')'
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree_rss_kb(root: int) -> tuple[int, int]:
    """(sum, largest) VmRSS over ``root`` and all its descendants."""
    children = children_by_parent()
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        rss = _rss_kb(pid)
        total, largest = total + rss, max(largest, rss)
        stack.extend(children.get(pid, ()))
    return total, largest


def run_measured(
    cmd: list[str],
    *,
    label: str,
    results: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    interval: float = 0.02,
) -> Measured:
    """Run ``cmd`` to completion: wall time, CPU time, peak RSS of the tree and of one process.

    RSS is sampled from /proc, not taken from wait4's ru_maxrss: Linux carries maxrss over
    fork and exec, so a child of this (pyarrow-laden) process would report our own RSS.
    CPU time (user + sys of the tree, from wait4) is the steadier number on a busy machine.
    """
    results.mkdir(parents=True, exist_ok=True)
    out_path, err_path = results / f"{label}.stdout", results / f"{label}.stderr"
    peak = [0, 0]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                total, largest = _tree_rss_kb(proc.pid)
                peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_tree_rss_mb=peak[0] / 1024,
        peak_max_rss_mb=peak[1] / 1024,
        returncode=proc.returncode,
        stdout=out_path,
        stderr=err_path,
    )
