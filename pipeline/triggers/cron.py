"""When a cron schedule fires, in its own timezone, as UTC instants.

croniter does the calendar; this module only fixes the conventions: half-open windows
(after, until] so consecutive windows never count a firing twice, and UTC results so
the backtest's virtual clock and the live record compare instants, not wall times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter


def fire_times(cron: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """Every firing in (after, until], in UTC. Both bounds must be timezone-aware."""
    zone = ZoneInfo(timezone)
    it = croniter(cron, after.astimezone(zone))
    times: list[datetime] = []
    while True:
        nxt = it.get_next(datetime)
        if nxt > until:
            return times
        times.append(nxt.astimezone(UTC))


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first firing strictly after `after`, in UTC."""
    return croniter(cron, after.astimezone(ZoneInfo(timezone))).get_next(datetime).astimezone(UTC)
