"""The HTTP contract of the prediction service (the orchestrator codes against these names).

Every model forbids unknown fields and non-finite numbers, so a typo or a NaN in a request is a
400 naming the field instead of a silent default or a 5xx. Field descriptions and examples are
what the OpenAPI page shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rebuy.contract import OFFERS

# Spelled out (not built from OFFERS) so the OpenAPI page lists them; a test keeps the two equal.
OfferName = Literal["none", "care_message", "coupon_10pct", "free_shipping", "points_x2", "wake_up_gift"]

# Hard ceiling of the schema; the configured cfg.serving.max_batch (<= this) is enforced at request time.
SCHEMA_MAX_BATCH = 10_000
AS_OF_MIN, AS_OF_MAX = datetime(1970, 1, 2), datetime(2200, 1, 1)
CustomerId = Annotated[str, Field(min_length=1, max_length=256, examples=["c000042"])]


class _Strict(BaseModel):
    # (pydantic 2 already refuses numbers for str fields; the former `str_strict=True` was no pydantic option)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ScoreRequest(_Strict):
    """Score customers by id; features come from the online store."""

    customer_ids: list[CustomerId] = Field(
        min_length=1,
        max_length=SCHEMA_MAX_BATCH,
        description="Customers to score (1 .. serving.max_batch ids). Unknown ids are scored on cold-start "
        "defaults and flagged.",
        examples=[["c000042", "c000043"]],
    )
    offers: list[OfferName] | None = Field(
        default=None,
        max_length=len(OFFERS),
        description="Offers eligible for this request; null means every offer in the catalogue.",
        examples=[["none", "coupon_10pct", "free_shipping"]],
    )
    as_of: datetime | None = Field(
        default=None,
        description="What 'now' is (ISO 8601; naive means UTC); null means the server clock.",
        examples=["2025-06-30T12:00:00Z"],
    )

    @field_validator("as_of")
    @classmethod
    def _in_timestamp_range(cls, v: datetime | None) -> datetime | None:
        # pandas timestamps (the feature store's clock) cover 1677..2262; keep well inside and say so.
        if v is not None and not (AS_OF_MIN <= v.replace(tzinfo=None) <= AS_OF_MAX):
            raise ValueError(f"as_of must be between {AS_OF_MIN:%Y-%m-%d} and {AS_OF_MAX:%Y-%m-%d}")
        return v


class FeatureRow(_Strict):
    """One customer's features, given by the caller."""

    customer_id: CustomerId | None = Field(
        default=None, description="Echoed back; optional.", examples=["c000042"]
    )
    features: dict[Annotated[str, Field(min_length=1, max_length=200)], float | None] = Field(
        description="Feature name -> value; a missing or null feature is treated as missing (NaN) by the "
        "models, exactly as in training. Unknown feature names are refused.",
        examples=[{"days_since_last_order": 12.0, "orders_90d": 3.0, "views_24h": None}],
    )


class ScoreFeaturesRequest(_Strict):
    """Score rows of features given directly (for apps that hold their own features)."""

    rows: list[FeatureRow] = Field(
        min_length=1,
        max_length=SCHEMA_MAX_BATCH,
        description="1 .. serving.max_batch rows.",
        examples=[[{"customer_id": "c000042", "features": {"days_since_last_order": 12.0}}]],
    )
    offers: list[OfferName] | None = Field(
        default=None,
        max_length=len(OFFERS),
        description="Offers eligible for this request; null means every offer in the catalogue.",
        examples=[["none", "coupon_10pct"]],
    )


class OfferEstimate(BaseModel):
    incremental_conversion: float = Field(
        description="Estimated change in P(order within the attribution window) if this offer is sent.",
        examples=[0.031],
    )
    incremental_margin: float = Field(
        description="Estimated incremental margin in shop currency, after the offer's cost.", examples=[1.42]
    )


class Reason(BaseModel):
    model: str = Field(description="Which model this reason explains.", examples=["churn"])
    feature: str = Field(description="Feature name.", examples=["days_since_last_order"])
    value: float | None = Field(description="The feature's value (null = missing).", examples=[47.0])
    contribution: float = Field(
        description="Contribution to the model's raw score (log-odds for classifiers; SHAP).", examples=[0.83]
    )


class CustomerScore(BaseModel):
    customer_id: str | None = Field(description="The scored customer.", examples=["c000042"])
    churn_probability: float = Field(description="P(no order in the churn horizon).", examples=[0.72])
    repurchase_probability: float = Field(
        description="P(an order in the repurchase horizon).", examples=[0.18]
    )
    expected_days_to_next_order: float = Field(
        description="Expected days until the next order.", examples=[41.5]
    )
    expected_value: float = Field(description="Expected spend in the value horizon.", examples=[86.3])
    segment: str = Field(description="Segment from churn risk and expected value.", examples=["dormant"])
    offers: dict[str, OfferEstimate] = Field(
        description="Estimated incremental effect of each eligible offer.",
        examples=[{"coupon_10pct": {"incremental_conversion": 0.031, "incremental_margin": 1.42}}],
    )
    best_offer: str = Field(
        description="Greedy best eligible offer by incremental margin ('none' when nothing pays). The "
        "orchestrator still draws the final action after its filters.",
        examples=["coupon_10pct"],
    )
    reasons: list[Reason] = Field(
        description="Top reasons per explained model (churn, repurchase), largest |contribution| first.",
        examples=[
            [{"model": "churn", "feature": "days_since_last_order", "value": 47.0, "contribution": 0.83}]
        ],
    )
    model_versions: dict[str, str] = Field(
        description="Model name -> registry version that produced this result.",
        examples=[{"churn": "3", "repurchase": "2"}],
    )
    feature_age_seconds: float | None = Field(
        description="Age of the oldest online feature used; null when no stored feature was found.",
        examples=[3600.0],
    )
    cold_start: bool = Field(
        description="True when no stored features were found: the models scored all-missing features "
        "(the same defaults LightGBM learned for missing values in training).",
        examples=[False],
    )


class ScoreResponse(BaseModel):
    results: list[CustomerScore] = Field(
        description="One result per requested customer, in request order.", examples=[[]]
    )


class ReloadResponse(BaseModel):
    reloaded: bool = Field(
        description="True when a new set of model versions was swapped in.", examples=[True]
    )
    model_versions: dict[str, str] = Field(
        description="Versions serving after the call.", examples=[{"churn": "4", "repurchase": "2"}]
    )


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description="Where in the request body: field names and list positions.",
        examples=[["customer_ids", 0]],
    )
    msg: str = Field(description="What is wrong there.", examples=["String should have at least 1 character"])


class ErrorResponse(BaseModel):
    """The one error body of every non-2xx answer (400, 401, 404, 413, 415, 500, 503)."""

    error: str = Field(
        description="What went wrong and what to do, in one line.",
        examples=["customer_ids: 1200 items, more than serving.max_batch=1000"],
    )
    detail: list[FieldError] = Field(
        default_factory=list,
        description="One entry per invalid field of a 400 (empty otherwise).",
        examples=[[{"loc": ["customer_ids"], "msg": "Field required"}]],
    )
