"""The customer's own clock: local date and hour of one UTC instant, per IANA timezone.

Quiet hours and birthdays are local notions; computing them with zoneinfo (not fixed offsets) keeps
them right across daylight-saving changes. Customers without a timezone are on UTC.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from rebuy.errors import DataError


def local_clock(as_of: pd.Timestamp, customers: pd.DataFrame) -> pd.DataFrame:
    """Per customer: `local_date` (datetime64 at midnight) and `local_hour` (0-23) of `as_of`.

    One conversion per distinct timezone, not per customer. An unknown zone name is a DataError
    naming the rows, because guessing a zone would put messages into someone's night.
    """
    tz = customers.get("timezone", pd.Series(None, index=customers.index, dtype=object))
    tz = tz.where(tz.notna() & (tz.astype(str).str.len() > 0), "UTC").astype(str)
    codes, names = pd.factorize(tz)
    dates, hours, bad = [], [], []
    for name in names:
        try:
            local = as_of.tz_convert(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            bad.append(name)
            local = as_of
        dates.append(np.datetime64(local.date(), "ns"))
        hours.append(local.hour)
    if bad:
        rows = customers.loc[tz.isin(bad), ["customer_id", "timezone"]].head(5)
        raise DataError(
            f"unknown IANA timezone names {sorted(bad)[:5]}",
            file="customers",
            column="timezone",
            rows=rows,
            hint="use IANA names such as Europe/Berlin or Asia/Shanghai, or leave the value empty for UTC",
        )
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "local_date": np.array(dates, dtype="datetime64[ns]")[codes]
            if len(codes)
            else np.array([], "datetime64[ns]"),
            "local_hour": np.array(hours, dtype=int)[codes] if len(codes) else np.array([], int),
        },
        index=customers.index,
    )


def in_quiet_hours(hours: pd.Series, quiet: tuple[int, int]) -> pd.Series:
    """True where the local hour is inside [start, end), which may wrap midnight (21 -> 8)."""
    start, end = quiet
    if start == end:
        return pd.Series(False, index=hours.index)
    if start < end:
        return (hours >= start) & (hours < end)
    return (hours >= start) | (hours < end)


def daily_slot(
    as_of: pd.Timestamp, customers: pd.DataFrame, quiet: tuple[int, int], every_hours: int
) -> pd.Series:
    """True for the customers whose once-a-day moment falls in the pass at `as_of` (index as `customers`).

    With passes every `every_hours` (a divisor of 24), a customer's local hour runs through one residue class
    modulo `every_hours`, so exactly one pass a day lands in [end of quiet hours, + every_hours) local time:
    their morning. Slow-moving work (the model audiences) is done for each customer there, once a local day,
    always outside quiet hours, instead of in all 24 hourly passes. A day with a daylight-saving change can
    give 0 or 2 such passes; `every_hours >= 24` selects everyone.
    """
    if every_hours >= 24:
        return pd.Series(True, index=customers.index)
    anchor = quiet[1] if quiet[0] != quiet[1] else 0
    hours = local_clock(as_of, customers)["local_hour"]
    return ((hours - anchor) % 24) < every_hours
