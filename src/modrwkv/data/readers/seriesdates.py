"""When a series' steps are, as its file dates them, and the dates of the steps after its last: what
`modrwkv forecast` writes in its `timestamp` column.

Two forms, cheap for files of millions of rows: a CSV's (or a table's) rows dated by its date column, held as one
datetime64[s] per row (`RowDates`), and a .tsf line's start and the header's `@frequency` (`StartDates`). The steps
after a series' last are dated only where its last dates (`CHECKED_INTERVALS` intervals, or all of them) are at a
regular interval: a fixed number of seconds (hourly, daily, weekly, 15-minute), or whole months (monthly, quarterly,
yearly) on one day of the month, or on each month's last day; otherwise `next_dates` is None (undated).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

CHECKED_INTERVALS = 10  # the last intervals of a series that must agree for its future to be dated
# An ISO 8601 date, with a time (to the second) or without, and no zone: what a date column's cells are parsed as
# (as numpy's datetime64 reads them); cells of any other form leave the column undated.
_ISO_CELL = re.compile(r"\d{4}-\d{2}-\d{2}(?P<time>[ T]\d{2}:\d{2}(?::\d{2})?)?")
# A .tsf date attribute's value, as the Monash archive writes it (1979-01-01 00-00-00: no colon, which separates a
# line's attributes), or with colons
_TSF_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2})[-:](\d{2})[-:](\d{2}))?")
# A .tsf @frequency: the archive's names, and N_<unit> (10_minutes, 4_seconds)
_NAMED_FREQUENCIES = {"yearly": (12, "M"), "quarterly": (3, "M"), "monthly": (1, "M"), "weekly": (7 * 86400, "s"),
                      "daily": (86400, "s"), "hourly": (3600, "s"), "half_hourly": (1800, "s"), "minutely": (60, "s"),
                      "secondly": (1, "s")}
_UNITS = {"second": (1, "s"), "minute": (60, "s"), "hour": (3600, "s"), "day": (86400, "s"), "week": (7 * 86400, "s"),
          "month": (1, "M"), "quarter": (3, "M"), "year": (12, "M")}
_COUNTED_FREQUENCY = re.compile(r"(\d+)_(second|minute|hour|day|week|month|quarter|year)s?")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A regular interval between steps: `count` seconds (unit "s") or `count` whole months (unit "M"), these on
    each month's last day where `month_end`."""

    count: int
    unit: str
    month_end: bool = False


@dataclasses.dataclass(frozen=True)
class RowDates:
    """Each step's date (datetime64[s], one per row of the series), `timed` where the file writes times (a date
    alone is written as a date)."""

    dates: np.ndarray
    timed: bool

    @classmethod
    def of(cls, dates: np.ndarray) -> RowDates:
        """`dates` (datetime64[s]), timed where one is not at midnight."""
        return cls(dates, bool((dates != dates.astype("datetime64[D]")).any()))

    def next_dates(self, horizon: int) -> list[str] | None:
        """The dates of the `horizon` steps after the last, continuing its last dates' regular interval; None where
        they are not regular (`regular_interval`)."""
        interval = regular_interval(self.dates[-(CHECKED_INTERVALS + 1):])
        if interval is None:
            return None
        return _written(_stepped(self.dates[-1], interval, np.arange(1, horizon + 1)), self.timed)


@dataclasses.dataclass(frozen=True)
class StartDates:
    """A series dated by its first step's date and the interval between steps (a .tsf line's `start_timestamp`
    and its header's `@frequency`): step t (from 0) is at start + t intervals."""

    start: np.datetime64
    interval: Interval
    length: int  # the series' steps
    timed: bool = True

    def next_dates(self, horizon: int) -> list[str] | None:
        """The dates of the `horizon` steps after the last: start + (length - 1 + h) intervals, h = 1..horizon."""
        ahead = np.arange(self.length, self.length + horizon)
        return _written(_stepped(self.start, self.interval, ahead), self.timed)


SeriesDates = RowDates | StartDates


def parse_date_cells(cells: list[str]) -> RowDates | None:
    """A date column's cells as `RowDates`, when every one is an ISO date (with a time or not, no zone); None
    otherwise."""
    timed = False
    for cell in cells:
        match = _ISO_CELL.fullmatch(cell)
        if match is None:
            return None
        timed = timed or match["time"] is not None
    try:
        return RowDates(np.array(cells, dtype="datetime64[s]"), timed)
    except ValueError:  # (a month 13, a day 32)
        return None


def tsf_dates(start: str, interval: Interval | None, length: int) -> StartDates | None:
    """A .tsf line's dates: its start (a date attribute's value, 1979-01-01 00-00-00) and `interval` (its header's
    `@frequency`, `tsf_interval`), months on each month's last day where the start is one; None without an interval
    or for a start not written so."""
    match = _TSF_DATE.fullmatch(start.strip())
    if match is None or interval is None:
        return None
    year, month, day, hour, minute, second = (part or "00" for part in match.groups())
    try:
        first = np.datetime64(f"{year}-{month}-{day}T{hour}:{minute}:{second}", "s")
    except ValueError:
        return None
    if interval.unit == "M" and int(day) > 28:  # (the 31st and then the 30th: each month's last day)
        date = first.astype("datetime64[D]")
        month_end = date == (first.astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
        interval = dataclasses.replace(interval, month_end=bool(month_end))
    return StartDates(first, interval, length)


def tsf_interval(frequency: str | None) -> Interval | None:
    """A .tsf `@frequency` as an `Interval` (yearly, quarterly, monthly, weekly, daily, hourly, half_hourly, minutely,
    10_minutes, 4_seconds ...); None for one not known."""
    if frequency is None:
        return None
    name = frequency.strip().lower()
    if name in _NAMED_FREQUENCIES:
        return Interval(*_NAMED_FREQUENCIES[name])
    match = _COUNTED_FREQUENCY.fullmatch(name)
    if match is None or int(match[1]) < 1:
        return None
    size, unit = _UNITS[match[2]]
    return Interval(int(match[1]) * size, unit)


def regular_interval(dates: np.ndarray) -> Interval | None:
    """The interval between consecutive `dates` (datetime64[s]) where they are all one: the same positive number of
    months with the same time of day and either the same day of month or each month's last day (checked first: a
    month start after another is a month later, not 31 days), else the same positive number of seconds. None for
    fewer than two dates or any other spacing."""
    if len(dates) < 2:
        return None
    months = dates.astype("datetime64[M]")
    steps = np.diff(months).astype(np.int64)
    if steps[0] >= 1 and (steps == steps[0]).all():
        within = dates - months.astype("datetime64[s]")  # the day and time within the month
        if (within == within[0]).all():
            return Interval(int(steps[0]), "M")
        days = dates.astype("datetime64[D]")
        time_of_day = dates - days.astype("datetime64[s]")
        if (days == (months + 1).astype("datetime64[D]") - 1).all() and (time_of_day == time_of_day[0]).all():
            return Interval(int(steps[0]), "M", month_end=True)
    seconds = np.diff(dates).astype(np.int64)
    if seconds[0] > 0 and (seconds == seconds[0]).all():
        return Interval(int(seconds[0]), "s")
    return None


def _stepped(origin: np.datetime64, interval: Interval, ahead: np.ndarray) -> np.ndarray | None:
    """The dates `ahead` (whole numbers) intervals after `origin` (datetime64[s]); None where a month's day does not
    exist in a month stepped to (the 30th of February)."""
    ahead = ahead.astype(np.int64)
    if interval.unit == "s":
        return origin + ahead * np.timedelta64(interval.count, "s")
    month = origin.astype("datetime64[M]")
    day = origin.astype("datetime64[D]")
    time_of_day = origin - day.astype("datetime64[s]")
    months = month + ahead * interval.count
    if interval.month_end:
        return ((months + 1).astype("datetime64[D]") - 1).astype("datetime64[s]") + time_of_day
    offset = day - month.astype("datetime64[D]")  # the day of the month, from 0
    days = months.astype("datetime64[D]") + offset
    if (days.astype("datetime64[M]") != months).any():
        return None
    return days.astype("datetime64[s]") + time_of_day


def _written(dates: np.ndarray | None, timed: bool) -> list[str] | None:
    """Dates as the file writes them: YYYY-MM-DD HH:MM:SS where `timed`, else YYYY-MM-DD."""
    if dates is None:
        return None
    if not timed:
        return [str(date) for date in dates.astype("datetime64[D]")]
    return [str(date).replace("T", " ") for date in dates]
