"""The one injectable clock.

Production uses :class:`WallClock` (Asia/Shanghai).  Tests, the demo and
simulations use a virtual clock that only moves when told to:
:class:`VirtualClock` in memory, or :class:`StoredVirtualClock`, whose time
lives in the database so that ``huying clock advance`` in one process moves
time for the server and scheduler in another.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Where a fresh virtual clock starts: a Monday morning in office hours.
VIRTUAL_EPOCH = datetime(2026, 10, 12, 9, 0, tzinfo=SHANGHAI)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


def ensure_aware(value: datetime, tz: ZoneInfo = SHANGHAI) -> datetime:
    """Interpret a naive datetime as local (Asia/Shanghai) time."""
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


class WallClock:
    virtual = False

    def __init__(self, tz: ZoneInfo = SHANGHAI):
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz)


class VirtualClock:
    """A clock that stands still until :meth:`set` or :meth:`advance` moves it."""

    virtual = True

    def __init__(self, start: datetime = VIRTUAL_EPOCH, tz: ZoneInfo = SHANGHAI):
        self.tz = tz
        self._now = ensure_aware(start, tz).astimezone(tz)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> datetime:
        when = ensure_aware(when, self.tz).astimezone(self.tz)
        if when < self._now:
            raise ValueError(f"virtual time only moves forward (now {self._now.isoformat()})")
        self._now = when
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("virtual time only moves forward")
        self._now = self._now + delta
        return self._now


class StoredVirtualClock:
    """A virtual clock persisted in the ``engine_clock`` table, shared by all processes."""

    virtual = True

    def __init__(self, session_factory: Callable[[], Session], tz: ZoneInfo = SHANGHAI):
        self.session_factory = session_factory
        self.tz = tz

    def _row(self, session: Session):
        from .models import ClockState

        row = session.get(ClockState, 1)
        if row is None:
            row = ClockState(id=1, now=VIRTUAL_EPOCH.astimezone(UTC))
            session.add(row)
            session.flush()
        return row

    def now(self) -> datetime:
        with self.session_factory() as session:
            row = self._row(session)
            session.commit()
            return row.now.astimezone(self.tz)

    def set(self, when: datetime) -> datetime:
        with self.session_factory() as session:
            row = self._row(session)
            when = ensure_aware(when, self.tz)
            if when < row.now:
                raise ValueError(f"virtual time only moves forward (now {row.now.astimezone(self.tz).isoformat()})")
            row.now = when.astimezone(UTC)
            session.commit()
            return when.astimezone(self.tz)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("virtual time only moves forward")
        with self.session_factory() as session:
            row = self._row(session)
            row.now = row.now + delta
            session.commit()
            return row.now.astimezone(self.tz)


class MemoClock:
    """One instant per unit of work: the first ``now()`` is read from ``clock`` and then kept.

    A request reads the time once (a stored virtual clock costs a query per
    read) and every timestamp it writes agrees.
    """

    def __init__(self, clock, now: datetime | None = None):
        self.clock = clock
        self.virtual = getattr(clock, "virtual", False)
        self._now: datetime | None = now

    def now(self) -> datetime:
        if self._now is None:
            self._now = self.clock.now()
        return self._now


def parse_duration(text: str) -> timedelta:
    """Parse ``90m``, ``2h``, ``3d``, ``1d2h30m`` or ISO-8601 ``PT2H``/``P3D`` durations."""
    import re

    raw = text.strip()
    iso = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", raw.upper())
    if iso and raw.upper() not in ("P", "PT"):
        d, h, m, s = (int(x or 0) for x in iso.groups())
        return timedelta(days=d, hours=h, minutes=m, seconds=s)
    parts = re.findall(r"(\d+)\s*([dhms])", raw.lower())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", raw.lower()):
        raise ValueError(f"not a duration: {text!r} (examples: 90m, 2h, 3d, 1d2h, PT2H)")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    total = timedelta()
    for n, u in parts:
        total += timedelta(**{unit[u]: int(n)})
    return total
