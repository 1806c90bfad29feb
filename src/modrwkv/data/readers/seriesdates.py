"""When a series' steps are, as its file dates them, and the dates of the steps after its last: what
`modrwkv forecast` writes in its `timestamp` column.

Two forms, cheap for files of millions of rows: a CSV's (or a table's) rows dated by its date column, held as one
datetime64[s] per row (`RowDates`), and a start and a frequency (`StartDates`): a .tsf line's start and the header's
`@frequency` (`tsf_interval`), or a series row's `start` and its pandas offset alias ("h", "W-SUN", "ME", as LOTSA,
GIFT-Eval and GluonTS store them: `pandas_frequency`). The steps after a series' last are dated only where its last
dates (`CHECKED_INTERVALS` intervals, or all of them) are at a regular interval: a fixed number of seconds (hourly,
daily, weekly, 15-minute), or whole months (monthly, quarterly, yearly) on one day of the month, or on each month's
last day; otherwise `next_dates` is None (undated), as it is for a frequency that is no such interval (business
days: `IrregularFrequency`). pandas is not needed: its aliases are read here, as its `date_range` steps by them.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

CHECKED_INTERVALS = 10  # the last intervals of a series that must agree for its future to be dated
_FEW_GAPS = 0.05  # the share of a series' intervals that may skip steps, for them to be missing rows (`skipped_steps`)
# An ISO 8601 date, with a time (to the second) or without, and no zone: what a date column's cells are parsed as
# (as numpy's datetime64 reads them); cells of any other form leave the column undated.
_ISO_CELL = re.compile(r"\d{4}-\d{2}-\d{2}(?P<time>[ T]\d{2}:\d{2}(?::\d{2})?)?")
# An ISO 8601 date and time with a zone, UTC (Z) or an offset from it (+01:00, +0100), as loggers and pandas write
# aware timestamps (Open Power System Data's utc_timestamp 2015-01-01T00:00:00Z, cet_cest_timestamp ...+0100)
_ZONED_CELL = re.compile(r"(?P<local>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?)"
                         r"(?:Z|(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2}))")
# A pandas Period of a month or a quarter as `str` writes it: what `to_csv` writes of a PeriodIndex
_PERIOD_CELL = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})|Q(?P<quarter>[1-4]))")
# A date of numbers as spreadsheets and loggers write it locally: the day and month in either order and the year last
# (31/01/2024, 1/31/24, 31.01.2024, 31-01-2024), or the year first with slashes or dots (2024/01/31); a time or not
_NUMERIC_DATE_CELL = re.compile(
    r"(?:(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})"
    r"|(?P<leading_year>\d{4})(?P<year_sep>[/.])(?P<month>\d{1,2})(?P=year_sep)(?P<day>\d{1,2}))"
    r"(?:[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?")
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
# A series row's start, as GluonTS writes a pandas Timestamp or Period (2021-01-01 00:00:00, 2021-01, 1750, 2021Q1)
# or a .tsf date attribute's value (1979-01-01 00-00-00); no zone
_START = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})(?:[ T](?P<hour>\d{2})[-:](?P<minute>\d{2})"
                    r"(?:[-:](?P<second>\d{2}))?)?)?|Q(?P<quarter>[1-4]))?")
# A pandas Period of a week as `str` writes it (what GluonTS' JSON Lines hold as a weekly series' start): its days
_WEEK_PERIOD = re.compile(r"(?P<first>\d{4}-\d{2}-\d{2})/(?P<last>\d{4}-\d{2}-\d{2})")
# A pandas offset alias: a multiple, a name and an anchor ("15min", "W-SUN", "QE-DEC"), in pandas' names since 2.2
# and before ("H", "T", "S", "M", "Q-DEC", "A-DEC"; what the hub's data sets were written with)
OFFSET_ALIAS = re.compile(r"(?P<count>\d*)(?P<name>[A-Za-z]+)(?:-(?P<anchor>[A-Za-z]{3}))?")
_TICKS = {"s": 1, "min": 60, "t": 60, "h": 3600, "d": 86400}  # seconds; pandas reads these in any case ("Min", "d")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# The month-based aliases (case as pandas reads them: "MS" is a month start, "ms" a millisecond): months between
# steps, the month of the year they are counted from where no anchor names one, and whether on the 1st (else last)
_MONTHLY = {"M": (1, 1, False), "ME": (1, 1, False), "MS": (1, 1, True),
            "Q": (3, 12, False), "QE": (3, 12, False), "QS": (3, 1, True),
            "A": (12, 12, False), "Y": (12, 12, False), "YE": (12, 12, False), "AS": (12, 1, True),
            "YS": (12, 1, True)}


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
    alone is written as a date); `period` "M", "Q" or "Y" where it writes each step as a pandas Period of a month, a
    quarter or a year (1950-01, 1965Q1: `to_csv` of a PeriodIndex; 1700: a year column's number), here its first day,
    and the steps after its last so too; `utc` where the file writes times with a zone: the dates are in UTC, and
    written so (2015-01-01 00:00:00+00:00, as pandas writes an aware UTC time)."""

    dates: np.ndarray
    timed: bool
    period: str | None = None
    utc: bool = False

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
        return _written(_stepped(self.dates[-1], interval, np.arange(1, horizon + 1)), self.timed, self.period,
                        self.utc)


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


@dataclasses.dataclass(frozen=True)
class IrregularFrequency:
    """A series its file dates by a start and a frequency that is no regular interval (`pandas_frequency` None:
    business days "B", semi-months "SM", an alias not read): its steps are not dated. `source`: the file."""

    frequency: str
    source: str

    def next_dates(self, horizon: int) -> None:
        """None: the steps after its last are not dated."""
        return None


@dataclasses.dataclass(frozen=True)
class Frequency:
    """A pandas offset alias as `StartDates` step by it: `interval` apart, on the dates the alias anchors its steps
    to: a `weekday` (0 Monday; "W-SUN" 6), or months of the year counted every `period` months from `month` (1-12;
    "QE-DEC" every 3 from December), on their 1st or (`interval.month_end`) their last day."""

    interval: Interval
    weekday: int | None = None
    period: int = 1
    month: int = 1

    def first_step(self, start: np.datetime64) -> np.datetime64:
        """The first date on the frequency's anchor at or after `start` (datetime64[s]), `start`'s time of day
        kept: where pandas' `date_range(start, freq=alias)` begins ("ME" from 2021-01-15: 2021-01-31)."""
        day = start.astype("datetime64[D]")
        if self.weekday is not None:
            weekday = (int(day.astype(np.int64)) + 3) % 7  # (1970-01-01, day 0, was a Thursday)
            return start + np.timedelta64((self.weekday - weekday) % 7, "D")
        if self.interval.unit == "s":
            return start
        month = day.astype("datetime64[M]")
        if not self.interval.month_end and day != month.astype("datetime64[D]"):
            month += 1  # (a month's 1st after its 1st: the next month's)
        month += (self.month - 1 - int(month.astype(np.int64))) % self.period  # (month 0 is January 1970)
        first = (month + 1).astype("datetime64[D]") - 1 if self.interval.month_end else month.astype("datetime64[D]")
        return first.astype("datetime64[s]") + (start - day.astype("datetime64[s]"))


SeriesDates = RowDates | StartDates | IrregularFrequency


def parse_date_cells(cells: list[str]) -> RowDates | None:
    """A date column's cells as `RowDates`, when every one is an ISO date (with a time or not, no zone), or every one
    a pandas Period of one kind, months or quarters (`_period_cells`), or every one a date of numbers in one order
    (`_numeric_date_cells`), or every one a time with a zone (`_zoned_cells`); None otherwise."""
    timed = False
    for cell in cells:
        match = _ISO_CELL.fullmatch(cell)
        if match is None:
            return _period_cells(cells) or _numeric_date_cells(cells) or _zoned_cells(cells)
        timed = timed or match["time"] is not None
    try:
        return RowDates(np.array(cells, dtype="datetime64[s]"), timed)
    except ValueError:  # (a month 13, a day 32)
        return None


def _period_cells(cells: list[str]) -> RowDates | None:
    """A date column's cells as `RowDates` of their months' or quarters' first days, when every one is a pandas Period
    of a month (1950-01) or every one of a quarter (1965Q1), as `to_csv` writes a PeriodIndex; None otherwise."""
    matches = [_PERIOD_CELL.fullmatch(cell) for cell in cells]
    if not matches or None in matches:
        return None
    quarterly = {match["quarter"] is not None for match in matches}  # type: ignore[index]
    if len(quarterly) != 1:
        return None
    period = "Q" if quarterly.pop() else "M"
    months = cells if period == "M" else [f"{match['year']}-{3 * int(match['quarter']) - 2:02d}"  # type: ignore[index]
                                          for match in matches]
    try:
        return RowDates(np.array(months, dtype="datetime64[M]").astype("datetime64[s]"), False, period)
    except ValueError:  # (a month 13)
        return None


def _zoned_cells(cells: list[str]) -> RowDates | None:
    """A date column's cells as `RowDates` in UTC, when every one is a time with a zone (`_ZONED_CELL`): each less its
    offset, so that a clock's change to summer time (+0100 to +0200) is neither an hour skipped nor one repeated."""
    matches = [_ZONED_CELL.fullmatch(cell) for cell in cells]
    if not matches or None in matches:
        return None
    try:
        local = np.array([match["local"] for match in matches], dtype="datetime64[s]")  # type: ignore[index]
    except ValueError:  # (a month 13)
        return None
    offsets = np.array([_offset_seconds(match) for match in matches], dtype="timedelta64[s]")  # type: ignore[arg-type]
    return RowDates(local - offsets, True, utc=True)


def _offset_seconds(match: re.Match[str]) -> int:
    """A `_ZONED_CELL` match's offset from UTC in seconds (0 for Z)."""
    if match["sign"] is None:
        return 0
    return (1 if match["sign"] == "+" else -1) * (3600 * int(match["hours"]) + 60 * int(match["minutes"]))


def _numeric_date_cells(cells: list[str]) -> RowDates | None:
    """A date column's cells as `RowDates`, when every one is a date of numbers (`_NUMERIC_DATE_CELL`) and the column
    tells their order: the year first is year, month, day; of the year last, a first number above 12 somewhere makes
    the column day first (31/01/2024), a second above 12 month first (1/31/2024), and where every day and month is
    12 or less (monthly dates on the 1st, 01/02/2024), the order whose dates step at a regular interval (1 Feb, 1 Mar
    ..., where month first would step a day at a time and jump to the next year). A two-digit year is 1969-2068, as
    Python's and pandas' %y read it. None where no order, or both, fit."""
    matches = [_NUMERIC_DATE_CELL.fullmatch(cell) for cell in cells]
    if not matches or None in matches:
        return None
    if all(match["leading_year"] for match in matches):  # type: ignore[index]
        orders = [("month", "day")]
    elif any(match["leading_year"] for match in matches):  # type: ignore[index]
        return None
    else:
        first_over = any(int(match["a"]) > 12 for match in matches)  # type: ignore[index]
        second_over = any(int(match["b"]) > 12 for match in matches)  # type: ignore[index]
        orders = [order for order, possible in ((("b", "a"), not second_over), (("a", "b"), not first_over))
                  if possible]  # (month, day) group names: day first, then month first
    candidates = []
    for month, day in orders:
        try:
            candidates.append(np.array([_iso_date(match, month, day) for match in matches], dtype="datetime64[s]"))
        except ValueError:  # (a 30th of February in this order)
            continue
    if len(candidates) == 2:
        candidates = [dates for dates in candidates if regular_interval(np.unique(dates)) is not None]
    if len(candidates) != 1:
        return None
    return RowDates(candidates[0], any(match["hour"] for match in matches))  # type: ignore[index]


def _iso_date(match: re.Match[str], month: str, day: str) -> str:
    """A `_NUMERIC_DATE_CELL` match as an ISO date (and time), its month and day in the groups so named."""
    year = match["leading_year"] or match["year"]
    if len(year) == 2:
        year = f"{19 if int(year) >= 69 else 20}{year}"
    time = f"T{int(match['hour']):02d}:{match['minute']}:{match['second'] or '00'}" if match["hour"] else ""
    return f"{year}-{int(match[month]):02d}-{int(match[day]):02d}{time}"


def tsf_dates(start: str, interval: Interval | None, length: int) -> StartDates | None:
    """A .tsf line's dates: its start (a date attribute's value, 1979-01-01 00-00-00) and `interval` (its header's
    `@frequency`, `tsf_interval`), months on each month's last day where the start is one; None without an interval
    or for a start not written so."""
    first = parse_start(start) if _TSF_DATE.fullmatch(start.strip()) else None
    if first is None or interval is None:
        return None
    date = first.astype("datetime64[D]")
    if interval.unit == "M" and date.item().day > 28 and date == (date.astype("datetime64[M]") + 1).astype(
            "datetime64[D]") - 1:
        interval = dataclasses.replace(interval, month_end=True)  # (the 31st and then the 30th: each month's last day)
    return StartDates(first, interval, length)


def frequency_dates(start: np.datetime64, frequency: str, length: int, source: str
                    ) -> StartDates | IrregularFrequency:
    """A series row's dates: `length` steps from its `start` (`parse_start`) at `frequency`, a pandas offset alias
    (`pandas_frequency`), as pandas' `date_range(start, periods=length, freq=frequency)` dates them (from the first
    date on the alias' anchor); written with their times where one is not midnight. `IrregularFrequency` (naming
    `source`, the file) for an alias that is no regular interval."""
    stepping = pandas_frequency(frequency)
    if stepping is None:
        return IrregularFrequency(frequency, source)
    first = stepping.first_step(start)
    interval = stepping.interval
    timed = first != first.astype("datetime64[D]") or (interval.unit == "s" and interval.count % 86400 != 0)
    return StartDates(first, interval, length, bool(timed))


def parse_start(text: str) -> np.datetime64 | None:
    """A series' start as datetime64[s]: a date with or without a time (2021-01-01 00:00:00, 2021-01-01T06:00, a
    .tsf value's 1979-01-01 00-00-00) or a pandas Period's text (2021-01, 1750, 2021Q1), which starts at its first
    day, a week's too as GluonTS writes a weekly Period (2021-01-04/2021-01-10: its first and last days); None for any
    other text (a zone) or a date that does not exist."""
    week = _WEEK_PERIOD.fullmatch(text.strip())
    if week is not None:
        try:
            first, last = np.datetime64(week["first"], "D"), np.datetime64(week["last"], "D")
        except ValueError:  # (a month 13, a day 32)
            return None
        return first.astype("datetime64[s]") if last - first == np.timedelta64(6, "D") else None
    match = _START.fullmatch(text.strip())
    if match is None:
        return None
    parts = match.groupdict()
    month = f"{3 * int(parts['quarter']) - 2:02d}" if parts["quarter"] else parts["month"] or "01"
    try:
        return np.datetime64(f"{parts['year']}-{month}-{parts['day'] or '01'}T{parts['hour'] or '00'}:"
                             f"{parts['minute'] or '00'}:{parts['second'] or '00'}", "s")
    except ValueError:  # (a month 13, a day 32)
        return None


@functools.lru_cache(maxsize=256)  # (a file's rows repeat a few aliases)
def pandas_frequency(alias: str) -> Frequency | None:
    """A pandas offset alias as `Frequency`: seconds, minutes, hours, days ("s"/"S", "min"/"T", "h"/"H", "D"),
    weeks ("W", "W-SUN"), month ends and starts ("ME"/"M", "MS"), quarters' and years' ("QE-DEC"/"Q-DEC"/"Q", "QS",
    "YE-DEC"/"A-DEC"/"Y", "YS"/"AS"), with a multiple ("15min", "5T", "2h"). None for one that is no regular
    interval (business days "B", "BME", semi-months "SM", milliseconds) or not an alias."""
    match = OFFSET_ALIAS.fullmatch(alias.strip())
    if match is None or (match["count"] and int(match["count"]) < 1):
        return None
    count, name, anchor = int(match["count"] or 1), match["name"], (match["anchor"] or "").upper()
    if name.lower() in _TICKS and not anchor:
        return Frequency(Interval(count * _TICKS[name.lower()], "s"))
    if name.lower() == "w" and (not anchor or anchor in _WEEKDAYS):
        return Frequency(Interval(count * 7 * 86400, "s"), weekday=_WEEKDAYS.index(anchor or "SUN"))
    if name not in _MONTHLY or (anchor and (name[0] == "M" or anchor not in _MONTHS)):
        return None
    period, month, month_start = _MONTHLY[name]
    return Frequency(Interval(count * period, "M", month_end=not month_start), period=period,
                     month=_MONTHS.index(anchor) + 1 if anchor else month)


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


@dataclasses.dataclass(frozen=True)
class SkippedSteps:
    """Dates that step by one regular `interval` but for a few steps of several: `skipped` steps missing in all, in
    `gaps` places, the first after the date at position `first` (`around`: it and the next, as the file writes them)."""

    interval: Interval
    skipped: int
    gaps: int
    first: int
    around: tuple[str, str]


def skipped_steps(rows: RowDates) -> SkippedSteps | None:
    """Where the dates of `rows` (in time order) step by one interval (whole months on one day of the month or on
    each month's last day, else a number of seconds) or a multiple of it, the multiples few (one, or at most
    `_FEW_GAPS` of the intervals: a day's rows with every weekend missing are business days, not gaps): the steps
    missing; None where none is, or the dates are no such series."""
    dates = rows.dates
    if len(dates) < 3:
        return None
    months = dates.astype("datetime64[M]")
    within = dates - months.astype("datetime64[s]")
    days = dates.astype("datetime64[D]")
    time_of_day = dates - days.astype("datetime64[s]")
    month_end = bool((days == (months + 1).astype("datetime64[D]") - 1).all() and (time_of_day == time_of_day[0]).all())
    by_month = month_end or bool((within == within[0]).all())
    steps = np.diff(months if by_month else dates).astype(np.int64)
    step = int(steps.min())
    if step <= 0 or (steps % step).any():
        return None
    gaps = steps > step
    if not gaps.any() or gaps.sum() > max(1, _FEW_GAPS * len(steps)):
        return None
    if not by_month and step == 86400 and all(_weekend(days[i] + 1, days[i + 1]) for i in np.flatnonzero(gaps)):
        return None  # (business days)
    first = int(np.argmax(gaps))
    before, after = _written(dates[first:first + 2], rows.timed, rows.period, rows.utc)
    return SkippedSteps(Interval(step, "M" if by_month else "s", month_end), int((steps[gaps] // step - 1).sum()),
                        int(gaps.sum()), first, (before, after))


def repeated_dates(rows: RowDates) -> list[int]:
    """The positions of the dates of `rows` (in time order) that repeat the one before, where the file writes dates
    alone (a clock's hour repeated where summer time ends is a timed file's, and no mistake)."""
    return [] if rows.timed else [int(k) + 1 for k in np.flatnonzero(np.diff(rows.dates) == np.timedelta64(0, "s"))]


def _weekend(first: np.datetime64, end: np.datetime64) -> bool:
    """Whether the days [first, end) (datetime64[D]) are all Saturdays and Sundays."""
    return bool((((np.arange(first, end) - np.datetime64("1970-01-05")).astype(np.int64) % 7) >= 5).all())


def interval_text(interval: Interval) -> str:
    """An interval in words: "1 month", "3 months", "30 minutes", "1 day"."""
    count, unit = interval.count, "month"
    if interval.unit == "s":
        for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if count % size == 0:
                count //= size
                break
    return f"{count} {unit}{'' if count == 1 else 's'}"


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


def _written(dates: np.ndarray | None, timed: bool, period: str | None = None, utc: bool = False) -> list[str] | None:
    """Dates as the file writes them: YYYY-MM-DD HH:MM:SS where `timed`, else YYYY-MM-DD; a `period`'s as pandas writes
    its Periods (YYYY-MM, YYYYQn, YYYY); UTC times with their zone (YYYY-MM-DD HH:MM:SS+00:00)."""
    if dates is None:
        return None
    if period is not None:
        months = dates.astype("datetime64[M]").astype(np.int64)  # from January 1970
        return [f"{1970 + m // 12}" if period == "Y" else f"{1970 + m // 12}Q{m % 12 // 3 + 1}" if period == "Q"
                else f"{1970 + m // 12}-{m % 12 + 1:02d}" for m in months]
    if not timed:
        return [str(date) for date in dates.astype("datetime64[D]")]
    return [str(date).replace("T", " ") + ("+00:00" if utc else "") for date in dates]
