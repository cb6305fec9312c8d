"""The load generator in a process of its own, so its clients do not share the caller's GIL.

Design note. The drill used to run :class:`LoadGenerator` as threads of the process that
also runs the catch-up follower and drives the cutover. At 500 requests/s the generator's
threads need about 40% of a core in Python, and every other thread of that interpreter
then waited for the GIL behind them: the fence and proxy calls of the write switch, the
follower's applies (its lag), the gates' reads. The clients of a real cutover are other
processes on other machines; here they are at least another process. They still share the
box's CPUs, so the load costs what it costs; only the interpreter is no longer shared.

``LoadProcess`` has the generator's interface (``start()``, ``stop() -> LoadSummary``,
``outcomes``, ``acknowledged``) plus ``started_wall``, the wall-clock time of request 0's
schedule (``RequestOutcome.sent_at`` counts from it). The child is
``python -m services.load``: it starts the generator, reports the start on stdout and runs
until its stdin closes (``stop()``, or the parent dying: a drill killed hard leaves no load
behind), then writes every outcome to a JSON file and exits.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runeshift.errors import ConfigError, FatalError
from services.load.load_generator import AckedWrite, LoadSummary, RequestOutcome
from services.load.world_ids import WorldIds

STOP_TIMEOUT_S = 300.0  # the generator waits up to its read timeout (90 s) for held writes


def write_ids(ids: WorldIds, path: Path) -> None:
    path.write_text(json.dumps({"member_ids": ids.member_ids, "script_ids": ids.script_ids}))


def read_ids(path: Path) -> WorldIds:
    data = json.loads(path.read_text())
    return WorldIds(tuple(data["member_ids"]), tuple(data["script_ids"]))


def results_json(
    summary: LoadSummary,
    outcomes: list[RequestOutcome],
    acked: list[AckedWrite],
    started_wall: float,
) -> dict[str, Any]:
    return {
        "summary": summary.as_json(),
        "started_wall": started_wall,
        "outcomes": [asdict(o) for o in outcomes],
        "acknowledged": [asdict(a) for a in acked],
    }


class LoadProcess:
    """Runs ``python -m services.load`` against ``base_url``; see the module note."""

    def __init__(
        self, base_url: str, rate: float, ids: WorldIds, *, seed: int | None = None
    ) -> None:
        if rate <= 0:
            raise ConfigError(f"--rate must be positive, got {rate}")
        self.base_url = base_url
        self.rate = rate
        self._ids = ids
        self._seed = seed
        self._dir = Path(tempfile.mkdtemp(prefix="runeshift-load-"))
        self._proc: subprocess.Popen[str] | None = None
        self.started_wall = 0.0
        self._outcomes: list[RequestOutcome] = []
        self._acked: list[AckedWrite] = []

    def start(self) -> LoadProcess:
        """Start the child and return once it is sending."""
        if self._proc is not None:
            raise ConfigError("this load process was already started; make a new one")
        ids_path = self._dir / "ids.json"
        write_ids(self._ids, ids_path)
        argv = [
            sys.executable,
            "-m",
            "services.load",
            "--url",
            self.base_url,
            "--rate",
            str(self.rate),
            "--ids",
            str(ids_path),
            "--out",
            str(self._dir / "outcomes.json"),
        ]
        if self._seed is not None:
            argv += ["--seed", str(self._seed)]
        with (self._dir / "stderr.log").open("w") as stderr:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "started":
            self._proc.kill()
            self._proc.wait()
            self._proc.stdout.close()
            raise FatalError(f"the load generator did not start:\n{self._stderr_tail()}")
        self.started_wall = float(line[1])
        return self

    def stop(self) -> LoadSummary:
        """Stop sending, wait for every request sent to finish, read the outcomes."""
        if self._proc is None:
            raise ConfigError("the load process was not started")
        try:
            code = self._end()
            out = self._dir / "outcomes.json"
            if code != 0 or not out.is_file():
                raise FatalError(f"the load generator failed (exit {code}):\n{self._stderr_tail()}")
            data = json.loads(out.read_text())
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._outcomes = [RequestOutcome(**o) for o in data["outcomes"]]
        self._acked = [AckedWrite(**a) for a in data["acknowledged"]]
        return LoadSummary(**data["summary"])

    def abandon(self) -> None:
        """Stop the child without reading its outcomes (the drill failed elsewhere)."""
        try:
            if self._proc is not None:
                self._end()
        except FatalError:
            pass
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _end(self) -> int:
        assert self._proc is not None and self._proc.stdin is not None
        if not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            return self._proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise FatalError(
                f"the load generator did not stop within {STOP_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            if self._proc.stdout is not None:
                self._proc.stdout.close()

    @property
    def outcomes(self) -> list[RequestOutcome]:
        return list(self._outcomes)

    @property
    def acknowledged(self) -> list[AckedWrite]:
        return list(self._acked)

    def _stderr_tail(self) -> str:
        path = self._dir / "stderr.log"
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        return "\n".join(lines[-15:])
