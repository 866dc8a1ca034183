"""The data contract, stated once: canonical tables every stage reads and the simulator writes.

Canonical form (what `rebuy import` writes as Parquet under `<data_dir>/canonical/`):
ids and other text are Python str in object columns, kept exactly as given, timestamps are timezone-aware UTC
(`datetime64[ns, UTC]`), amounts are float64 in the shop's currency.

The `messages` table (sends only: the shop's newsletters, rebuy's own messages, imported sends) is the
exception for text: it runs to millions of rows (a weekly newsletter to 100k customers for two years), so
its ids are Arrow strings (`string[pyarrow]`) and its channel, source, campaign and offer are pandas
categoricals. Opens and clicks of messages stay in `events`, unsubscribes in `consent_updates`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

EVENT_TYPES: tuple[str, ...] = (
    "view",
    "cart",
    "order_history_view",  # the customer looks up their own past orders
    "delivery_check",
    "email_open",
    "email_click",
    "push_open",
    "app_open",
    "support_contact",
)
ENGAGEMENT_EVENTS: tuple[str, ...] = ("email_open", "email_click", "push_open", "app_open")
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "none")
OFFERS: tuple[str, ...] = (
    "none",
    "care_message",
    "coupon_10pct",
    "free_shipping",
    "points_x2",
    "wake_up_gift",
)
GROUPS: tuple[str, ...] = ("treatment", "control", "holdout")
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "sms", "push")
# who sent a message: the shop's regular newsletter, rebuy itself, or sends imported from the shop's tools
MESSAGE_SOURCES: tuple[str, ...] = ("newsletter", "rebuy", "import")

TABLES: tuple[str, ...] = ("customers", "orders", "events", "consent_updates", "messages")
REQUIRED: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "signup_at"),
    "orders": ("customer_id", "ordered_at", "amount"),
    "events": ("customer_id", "occurred_at", "event_type"),
    "consent_updates": ("customer_id", "changed_at", "channel", "consent"),
    "messages": ("message_id", "customer_id", "sent_at", "channel", "source"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "customers": ("birthday", "timezone", "region", "consent_email", "consent_sms", "consent_push"),
    "orders": ("order_id", "category", "discount", "items", "returned_amount"),
    "events": ("category",),
    "consent_updates": ("source",),
    "messages": ("campaign", "offer"),
}
TIMESTAMPS: dict[str, tuple[str, ...]] = {
    "customers": ("signup_at",),
    "orders": ("ordered_at",),
    "events": ("occurred_at",),
    "consent_updates": ("changed_at",),
    "messages": ("sent_at",),
}

UTC_TS = pd.DatetimeTZDtype(unit="ns", tz="UTC")
ARROW_STR = pd.StringDtype("pyarrow")  # compact text for the messages table's millions of ids
CATEGORY = pd.CategoricalDtype()


class _Strict(pa.DataFrameModel):
    class Config:
        strict = "filter"  # keep contract columns only, in canonical form
        coerce = False


class Customers(_Strict):
    customer_id: Series[str] = pa.Field(unique=True, nullable=False)
    signup_at: Series[UTC_TS] = pa.Field(nullable=False)  # type: ignore[valid-type]
    birthday: Series[pd.Timestamp] = pa.Field(nullable=True)
    timezone: Series[str] = pa.Field(nullable=True)
    region: Series[str] = pa.Field(nullable=True)
    consent_email: Series[bool] = pa.Field(nullable=False)
    consent_sms: Series[bool] = pa.Field(nullable=False)
    consent_push: Series[bool] = pa.Field(nullable=False)


class Orders(_Strict):
    order_id: Series[str] = pa.Field(unique=True, nullable=False)
    customer_id: Series[str] = pa.Field(nullable=False)
    ordered_at: Series[UTC_TS] = pa.Field(nullable=False)  # type: ignore[valid-type]
    amount: Series[float] = pa.Field(ge=0, nullable=False)
    category: Series[str] = pa.Field(nullable=True)
    discount: Series[float] = pa.Field(ge=0, nullable=False)
    items: Series[int] = pa.Field(ge=0, nullable=False)
    returned_amount: Series[float] = pa.Field(ge=0, nullable=False)


class Events(_Strict):
    customer_id: Series[str] = pa.Field(nullable=False)
    occurred_at: Series[UTC_TS] = pa.Field(nullable=False)  # type: ignore[valid-type]
    event_type: Series[str] = pa.Field(isin=list(EVENT_TYPES), nullable=False)
    category: Series[str] = pa.Field(nullable=True)


class ConsentUpdates(_Strict):
    customer_id: Series[str] = pa.Field(nullable=False)
    changed_at: Series[UTC_TS] = pa.Field(nullable=False)  # type: ignore[valid-type]
    channel: Series[str] = pa.Field(isin=["email", "sms", "push"], nullable=False)
    consent: Series[bool] = pa.Field(nullable=False)
    source: Series[str] = pa.Field(nullable=True)


class Messages(_Strict):
    """Sends only. `message_id` is unique across sources (rebuy's sends use their decision_id)."""

    # pandas text of either storage (a Parquet round trip hands back "string[python]"; readers use Arrow)
    message_id: Series[Any] = pa.Field(unique=True, nullable=False)
    customer_id: Series[Any] = pa.Field(nullable=False)
    sent_at: Series[UTC_TS] = pa.Field(nullable=False)  # type: ignore[valid-type]
    channel: Series[pd.CategoricalDtype] = pa.Field(isin=list(MESSAGE_CHANNELS), nullable=False)
    source: Series[pd.CategoricalDtype] = pa.Field(isin=list(MESSAGE_SOURCES), nullable=False)
    campaign: Series[pd.CategoricalDtype] = pa.Field(nullable=True)
    offer: Series[pd.CategoricalDtype] = pa.Field(nullable=True)

    @pa.check("message_id", "customer_id", name="pandas_text")
    def _text(cls, s: pd.Series) -> bool:
        return isinstance(s.dtype, pd.StringDtype)


SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "customers": Customers,
    "orders": Orders,
    "events": Events,
    "consent_updates": ConsentUpdates,
    "messages": Messages,
}


def empty(table: str) -> pd.DataFrame:
    """An empty canonical table with the right dtypes (e.g. events for an orders-only shop)."""
    dtypes: dict[str, Any] = {  # type: ignore[assignment]  # mixed dtype objects per table
        "customers": {
            "customer_id": object,
            "signup_at": UTC_TS,
            "birthday": "datetime64[ns]",
            "timezone": object,
            "region": object,
            "consent_email": bool,
            "consent_sms": bool,
            "consent_push": bool,
        },
        "orders": {
            "order_id": object,
            "customer_id": object,
            "ordered_at": UTC_TS,
            "amount": float,
            "category": object,
            "discount": float,
            "items": "int64",
            "returned_amount": float,
        },
        "events": {"customer_id": object, "occurred_at": UTC_TS, "event_type": object, "category": object},
        "consent_updates": {
            "customer_id": object,
            "changed_at": UTC_TS,
            "channel": object,
            "consent": bool,
            "source": object,
        },
        "messages": {
            "message_id": ARROW_STR,
            "customer_id": ARROW_STR,
            "sent_at": UTC_TS,
            "channel": CATEGORY,
            "source": CATEGORY,
            "campaign": CATEGORY,
            "offer": CATEGORY,
        },
    }[table]
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})
