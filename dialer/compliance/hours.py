"""Calling-hours evaluation: the intersection of every hours rule over every candidate zone.

47 CFR 64.1200(c)(1) and 16 CFR 310.4(c) say 08:00-21:00 "local time at the called party's
location"; state statutes narrow the window, close Sundays and legal holidays, and Mississippi
counts in Central Standard Time all year (Miss. Code 77-3-723(1)). Since the location is not
known exactly, each rule is checked in every candidate zone (a "check"): the call is allowed
only when every check passes. Local times and daylight saving come from the tz database
(zoneinfo); holidays, with observed-day shifts, from the `holidays` package. Windows are
half-open: 08:00 is inside, 21:00 outside.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import holidays

from dialer.compliance.rules import Rule

NEXT_ALLOWED_HORIZON_DAYS = 10


class MissingHolidayCalendar(LookupError):
    """No holiday calendar exists for a state a rule needs one for."""


class HolidayCalendars:
    """State public holidays with observed-day shifts, cached per (state, year)."""

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
            dates = frozenset(holidays.country_holidays(self.country, subdiv=state, years=day.year, observed=True))
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
        local = moment.astimezone(self.clock)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        return any(start <= seconds < end for start, end in self.windows_on(local.date(), calendars))

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
    return [c for c in checks if not c.allows(moment, calendars)]


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
