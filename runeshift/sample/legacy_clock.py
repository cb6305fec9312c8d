"""Time in the generated legacy world: a fixed "now", New York wall clocks, unix seconds.

Nothing reads the machine clock: every time derives from :data:`WORLD_NOW`, so one seed gives
byte-identical data on every run. The legacy PHP app wrote DATETIME columns as New York wall-clock
time and did its date arithmetic on the wall clock (``strtotime('+1 month')``), which is how a
renewal that started at ``2021-02-14 02:30:00`` came to start its next month at the non-existent
``2021-03-14 02:30:00``. So DATETIME values are modelled here as *wall seconds* (naive New York
seconds since 1970-01-01 00:00, as if the wall clock were UTC) and converted to real instants
(UTC unix seconds) only for INT and TIMESTAMP columns.

The US rule since 2007 (second Sunday of March 02:00 -> 03:00, first Sunday of November
02:00 -> 01:00) is computed here rather than asked of ``zoneinfo`` row by row, because the
generator converts millions of values; a test pins it against ``zoneinfo``.
"""

from __future__ import annotations

import bisect
import calendar
from datetime import UTC, date, datetime

HOUR = 3600
DAY = 86400

WORLD_NOW = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp())
"""The moment the generated world is a snapshot of."""

FORUM_OPENED = int(datetime(2012, 1, 1, tzinfo=UTC).timestamp())
UTF8_SWITCH = int(datetime(2014, 6, 1, tzinfo=UTC).timestamp())
"""Before this the forum wrote names as real latin1; after it, UTF-8 bytes into latin1 columns."""

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_YEARS = range(2000, 2036)


def _nth_sunday(year: int, month: int, nth: int) -> int:
    """Day number (days since 1970-01-01) of the ``nth`` Sunday of a month."""
    first = date(year, month, 1)
    offset = (6 - first.weekday()) % 7
    return first.toordinal() + offset + 7 * (nth - 1) - _EPOCH_ORDINAL


def _boundaries() -> tuple[list[int], list[int]]:
    utc: list[int] = []
    wall: list[int] = []
    for year in _YEARS:
        spring = _nth_sunday(year, 3, 2) * DAY
        fall = _nth_sunday(year, 11, 1) * DAY
        utc += [spring + 7 * HOUR, fall + 6 * HOUR]
        # On the wall clock DST covers [03:00 spring day, 02:00 fall day): 01:00-02:00 on the
        # fall day is read as its first (DST) occurrence, 02:00-03:00 on the spring day (which
        # never happened) as standard time, like zoneinfo with fold=0.
        wall += [spring + 3 * HOUR, fall + 2 * HOUR]
    return utc, wall


_UTC_BOUNDS, _WALL_BOUNDS = _boundaries()


def utc_to_wall(utc: int) -> int:
    """New York wall seconds of a UTC instant."""
    dst = bisect.bisect_right(_UTC_BOUNDS, utc) & 1
    return utc - (4 if dst else 5) * HOUR


def wall_to_utc(wall: int) -> int:
    """The UTC instant of a wall-clock value (fold=0 for ambiguous and non-existent times)."""
    dst = bisect.bisect_right(_WALL_BOUNDS, wall) & 1
    return wall + (4 if dst else 5) * HOUR


def wall_seconds(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Wall seconds of a New York wall-clock reading."""
    days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    return days * DAY + hour * HOUR + minute * 60


def add_months(wall: int, months: int) -> int:
    """``strtotime('+N month')`` on the wall clock, clamping the day to the month's end."""
    days, rest = divmod(wall, DAY)
    d = date.fromordinal(_EPOCH_ORDINAL + days)
    total = d.year * 12 + d.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * DAY + rest


class DatetimeFormatter:
    """Formats wall (or UTC) seconds as ``YYYY-MM-DD HH:MM:SS``, cheaply, millions of times."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}
        self._clock = [
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        ]

    def __call__(self, seconds: int) -> str:
        days, rest = divmod(seconds, DAY)
        text = self._days.get(days)
        if text is None:
            text = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
            self._days[days] = text
        return f"{text} {self._clock[rest]}"


def dst_fall_back_hours(years: range) -> list[tuple[int, int]]:
    """Wall-second ranges [start, end) of the fall-back hour (01:00-02:00, lived twice)."""
    return [
        (_nth_sunday(y, 11, 1) * DAY + HOUR, _nth_sunday(y, 11, 1) * DAY + 2 * HOUR) for y in years
    ]


def dst_spring_gap_hours(years: range) -> list[tuple[int, int]]:
    """Wall-second ranges [start, end) of the spring-forward hour (02:00-03:00, never lived)."""
    return [
        (_nth_sunday(y, 3, 2) * DAY + 2 * HOUR, _nth_sunday(y, 3, 2) * DAY + 3 * HOUR)
        for y in years
    ]


ZERO_DATETIME = "0000-00-00 00:00:00"
