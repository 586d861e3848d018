"""Calling-hours evaluation: the intersection of every hours rule over every candidate zone.

47 CFR 64.1200(c)(1) and 16 CFR 310.4(c) say 08:00-21:00 "local time at the called party's
location"; state statutes narrow the window, close Sundays and legal holidays, and Mississippi
counts in Central Standard Time all year (Miss. Code 77-3-723(1)). Since the location is not
known exactly, each rule is checked in every candidate zone (a "check"): the call is allowed
only when every check passes. Local times and daylight saving come from the tz database
(zoneinfo); holidays, with observed-day shifts, from the `holidays` package, plus the legal
holidays a state's statute names that its calendar lacks (Pennsylvania, 44 P.S. § 11: Good Friday,
Flag Day, Election Day). Windows are half-open: 08:00 is inside, 21:00 outside.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import holidays

from dialer.compliance.rules import Rule

NEXT_ALLOWED_HORIZON_DAYS = 10


class MissingHolidayCalendar(LookupError):
    """No holiday calendar exists for a state a rule needs one for."""


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _pennsylvania_legal_holidays(year: int) -> set[date]:
    """Legal holidays of 44 P.S. § 11 that the `holidays` package's US-PA calendar lacks (its PA
    calendar is the state employees' one): Good Friday, Flag Day (June 14, and the Monday after when
    it falls on a Sunday: the section moves its holidays off Sundays) and Election Day (the Tuesday after the
    first Monday of November, every year). The list is from a secondary source (blr.com, "PA Stat.
    Tit. 44 Sec. 11"); the section also makes every Saturday afternoon a half holiday, which the
    PA-HRS rule does not apply (docs/compliance.md, Known gaps)."""
    days = {_easter(year) - timedelta(days=2)}
    flag_day = date(year, 6, 14)
    days.add(flag_day)
    if flag_day.weekday() == 6:
        days.add(flag_day + timedelta(days=1))
    first_monday = date(year, 11, 1) + timedelta(days=(7 - date(year, 11, 1).weekday()) % 7)
    days.add(first_monday + timedelta(days=1))
    return days


# "Legal holidays" a state's statute names beyond the `holidays` package's calendar for it.
EXTRA_LEGAL_HOLIDAYS = {"PA": _pennsylvania_legal_holidays}


class HolidayCalendars:
    """State public holidays with observed-day shifts, cached per (state, year), plus the legal
    holidays of EXTRA_LEGAL_HOLIDAYS."""

    def __init__(self, country: str = "US"):
        self.country = country
        self._subdivisions = set(holidays.country_holidays(country).subdivisions)
        self._cache: dict[tuple[str, int], frozenset[date]] = {}

    def is_holiday(self, state: str, day: date) -> bool:
        key = (state, day.year)
        dates = self._cache.get(key)
        if dates is None:
            if state not in self._subdivisions:
                raise MissingHolidayCalendar(f"no holiday calendar for {self.country}-{state}")
            found = set(holidays.country_holidays(self.country, subdiv=state, years=day.year, observed=True))
            if self.country == "US" and state in EXTRA_LEGAL_HOLIDAYS:
                found |= EXTRA_LEGAL_HOLIDAYS[state](day.year)
            dates = frozenset(found)
            self._cache[key] = dates
        return day in dates


@dataclass(frozen=True)
class HoursCheck:
    """One hours rule evaluated on one clock (a candidate zone, or the rule's fixed clock)."""
    rule: Rule
    clock: tzinfo
    zone_name: str
    waived: bool = False      # Sunday/holiday closures waived by consent (e.g. Utah)

    def windows_on(self, day: date, calendars: HolidayCalendars) -> tuple[tuple[int, int], ...]:
        spec = self.rule.hours
        if self.waived:
            # A waiver reopens closed days with the rule's widest weekday window.
            return max(spec.windows, key=len)
        if spec.closed_on_holidays and calendars.is_holiday(self.rule.state, day):
            return ()
        return spec.windows[day.weekday()]

    def allows(self, moment: datetime, calendars: HolidayCalendars) -> bool:
        return self.allows_local(moment.astimezone(self.clock), calendars)

    def allows_local(self, local: datetime, calendars: HolidayCalendars) -> bool:
        """allows() for the moment already on this check's clock."""
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        for start, end in self.windows_on(local.date(), calendars):
            if start <= seconds < end:
                return True
        return False

    def starts_between(self, moment: datetime, first_day: int, last_day: int,
                       calendars: HolidayCalendars) -> list[datetime]:
        """Window starts after `moment` on local days first_day..last_day (0 = moment's local day)."""
        today = moment.astimezone(self.clock).date()
        starts = []
        for offset in range(first_day, last_day + 1):
            day = today + timedelta(days=offset)
            for start, _end in self.windows_on(day, calendars):
                at = datetime.combine(day, time(start // 3600, start % 3600 // 60), tzinfo=self.clock)
                if at > moment:
                    starts.append(at)
        return starts

    def day_boundary(self, moment: datetime, offset: int) -> datetime:
        """Local midnight starting day `offset` after moment's local day, on this check's clock."""
        day = moment.astimezone(self.clock).date() + timedelta(days=offset)
        return datetime.combine(day, time(0), tzinfo=self.clock)


def failing_checks(checks: list[HoursCheck], moment: datetime, calendars: HolidayCalendars) -> list[HoursCheck]:
    # several rules share a zone: convert the moment once per clock (the hot path's main cost)
    local_by_clock: dict[tzinfo, datetime] = {}
    failing = []
    for c in checks:
        local = local_by_clock.get(c.clock)
        if local is None:
            local = local_by_clock[c.clock] = moment.astimezone(c.clock)
        if not c.allows_local(local, calendars):
            failing.append(c)
    return failing


def next_allowed(checks: list[HoursCheck], moment: datetime, calendars: HolidayCalendars,
                 horizon_days: int = NEXT_ALLOWED_HORIZON_DAYS) -> datetime | None:
    """The earliest instant >= moment at which every check passes, or None within the horizon.

    The allowed set is an intersection of unions of half-open intervals, so its earliest point
    after `moment` is `moment` itself or the start of one of the intervals: test those in order,
    a couple of days at a time (every start before `bound` has been generated).
    """
    if not failing_checks(checks, moment, calendars):
        return moment
    step = 2
    pending: set[datetime] = set()
    for first in range(0, horizon_days + 1, step):
        last = min(first + step - 1, horizon_days)
        # Starts on later local days of some clock may fall before `bound`: only those below it are final.
        bound = min(c.day_boundary(moment, last + 1) for c in checks) if last < horizon_days else None
        pending.update(s for c in checks for s in c.starts_between(moment, first, last, calendars))
        for candidate in sorted(pending):
            if bound is not None and candidate >= bound:
                break
            pending.discard(candidate)
            if not failing_checks(checks, candidate, calendars):
                return candidate
    return None


@dataclass(frozen=True)
class Timeline:
    """Where a set of checks allows calls, precomputed over [start, end): the allowed set only
    changes at window edges, so it is a list of edges with the status that follows each one.
    Shared by every decision with the same checks on the same UTC day (a bisect per decision).
    Assumes no window edge falls inside a daylight-saving gap (02:00-03:00 local)."""
    edges: tuple[datetime, ...]
    allowed: tuple[bool, ...]
    end: datetime

    def _index(self, moment: datetime) -> int:
        if not self.edges[0] <= moment < self.end:
            raise ValueError(f"{moment} is outside the timeline")
        return bisect.bisect_right(self.edges, moment) - 1

    def allows(self, moment: datetime) -> bool:
        return self.allowed[self._index(moment)]

    def next_allowed(self, moment: datetime, horizon: timedelta) -> datetime | None:
        i = self._index(moment)
        if self.allowed[i]:
            return moment
        for j in range(i + 1, len(self.edges)):
            if self.allowed[j]:
                return self.edges[j] if self.edges[j] <= moment + horizon else None
        return None


def build_timeline(checks: list[HoursCheck], start: datetime, end: datetime,
                   calendars: HolidayCalendars) -> Timeline:
    edges = {start}
    for check in checks:
        first = start.astimezone(check.clock).date() - timedelta(days=1)
        last = end.astimezone(check.clock).date() + timedelta(days=1)
        day = first
        while day <= last:
            for window in check.windows_on(day, calendars):
                for seconds in window:
                    at = (datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60), tzinfo=check.clock)
                          if seconds < 86400 else
                          datetime.combine(day + timedelta(days=1), time(0), tzinfo=check.clock))
                    if start < at < end:
                        edges.add(at.astimezone(start.tzinfo))
            day += timedelta(days=1)
    ordered = tuple(sorted(edges))
    return Timeline(ordered, tuple(not failing_checks(checks, e, calendars) for e in ordered), end)
