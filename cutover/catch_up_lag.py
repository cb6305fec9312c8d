"""The catch-up's lag as the cutover sees it: what the follower last committed, and how fresh.

The follower (``runeshift sync``) stores, per source, the heartbeat lag of its last commit
in ``runeshift.sync_state`` (see ``runeshift.heartbeat``: one clock, no skew). A lag figure
is only worth something while it is fresh, so each reading carries its age and whether a
follower holds the sync lock at all; a stopped follower shows its last lag forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runeshift.settings import Settings
from runeshift.sync import sync_status


@dataclass(frozen=True)
class LagReading:
    """The worst source's lag, how old that measurement is, and the follower's state."""

    lag_s: float | None
    age_s: float | None
    follower_active: bool
    worst_source: str | None
    changes_applied: int

    def as_json(self) -> dict[str, object]:
        return {
            "lag_s": self.lag_s,
            "age_s": self.age_s,
            "follower_active": self.follower_active,
            "worst_source": self.worst_source,
            "changes_applied": self.changes_applied,
        }


class LagProbe(Protocol):
    def read(self) -> LagReading: ...


class FollowerLag:
    """Reads the lag the follower recorded (``runeshift sync status``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def read(self) -> LagReading:
        status = sync_status(self._settings)
        worst: tuple[float, str] | None = None
        ages: list[float] = []
        changes = 0
        missing = False
        for source in status.sources:
            changes += int(source.get("changes_applied") or 0)
            lag, age = source.get("lag_seconds"), source.get("lag_measured_seconds_ago")
            if lag is None or age is None:
                missing = True
                continue
            ages.append(float(age))
            if worst is None or float(lag) > worst[0]:
                worst = (float(lag), str(source["source"]))
        if missing or worst is None:
            return LagReading(None, None, status.active, None, changes)
        return LagReading(worst[0], max(ages), status.active, worst[1], changes)
