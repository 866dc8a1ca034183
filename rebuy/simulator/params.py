"""The simulator's configuration and each customer's hidden, fixed traits.

Traits are drawn once from the seed (a pure function of `SimConfig`), so a saved simulator only
needs its config and decision log to be rebuilt exactly; the arrays are saved too for inspection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pandas as pd

from rebuy.config import OffersConfig
from rebuy.contract import OFFERS

CATEGORIES: tuple[str, ...] = (
    "fashion",
    "beauty",
    "home",
    "electronics",
    "grocery",
    "sports",
    "toys",
    "books",
)
SIM_OFFERS: tuple[str, ...] = OFFERS  # the contract's offers, in the same order
SIM_CHANNELS: tuple[str, ...] = ("email", "sms", "push")
# (IANA zone, region, share of customers)
TIMEZONES: tuple[tuple[str, str, float], ...] = (
    ("Europe/Berlin", "DE", 0.34),
    ("Europe/Vienna", "AT", 0.08),
    ("Europe/Zurich", "CH", 0.06),
    ("Europe/London", "GB", 0.14),
    ("Europe/Paris", "FR", 0.12),
    ("America/New_York", "US", 0.10),
    ("America/Los_Angeles", "US", 0.05),
    ("Asia/Shanghai", "CN", 0.07),
    ("Australia/Sydney", "AU", 0.04),
)

# Streams of the seed sequence: each (seed, stream, day) gets its own generator, so the history can
# be replayed day by day and events never shift the randomness of orders.
STREAM_TRAITS = 1
STREAM_DYNAMICS = 2
STREAM_EVENTS = 3
STREAM_DECISIONS = 4
STREAM_TRUTH = 5
STREAM_CAMPAIGN = 6
STREAM_SIGNUPS = 8  # customers who sign up while the live shop runs (per block of days)
# the live shop keeps signing customers up at the history's rate over its last LIVE_RATE_WINDOW days,
# drawn in blocks of LIVE_BLOCK_DAYS days
LIVE_RATE_WINDOW = 91
LIVE_BLOCK_DAYS = 28


@dataclass(frozen=True)
class TraceParams:
    """What the data shows of a customer: the strength of each hidden trait's trace in the tables.

    One table (DESIGN.md, "What the data shows of a customer"), each row asserted by a test on the default
    shop (tests/core/test_simulator_traces.py; ranges fixed in issue #17 before looking):

    | trait | trace in the tables | parameters | asserted |
    |---|---|---|---|
    | price sensitivity | discount share of orders: coupon codes on ordinary days, promotions on sale days | code_use, sale_promo_base, sale_promo_per_ps | Spearman(trait, discount share), >= 3 orders: [0.3, 0.65] |
    | message aversion | the newsletter opened / clicked less, unsubscribed from more | averse_open, averse_click, newsletter_unsub(_averse) | AUC of the 90-day open rate, consented, >= 8 newsletters: >= 0.70 |
    | purchase rate | aimless browsing and window shopping outside purchase intent | browse_median, browse_rate_elasticity, browse_noise, window_shopping | NOT MET yet: Spearman(rate x alive, idle views / week), >= 1 order, target [0.25, 0.6], measured ~0.09 (seed 3); no test |
    | offer response noise | none: it stays hidden (the honest gap between data and oracle) | Traits.noise | - |

    The plain-message effect (`care_message_tau`) and message clicks that land on the site
    (`click_visits`) are checked against a public randomized e-mail test (tests/core/test_simulator_calibration.py).
    """

    # price sensitivity -> discounts: P(a coupon code on an ordinary day's order) = code_use * price_sens;
    # on shop-wide sale days P(a promotion) = sale_promo_base + sale_promo_per_ps * price_sens
    code_use: float = 0.35
    sale_promo_base: float = 0.2
    sale_promo_per_ps: float = 0.6
    # message aversion -> the newsletter: open chance = min(0.85, open_per_engage * engage) (times
    # averse_open for averse customers); click given open; unsubscribe chance per newsletter
    open_per_engage: float = 4.0
    averse_open: float = 0.12
    click: float = 0.25
    averse_click: float = 0.08
    newsletter_unsub: float = 0.0015
    newsletter_unsub_averse: float = 0.012
    newsletter_fatigue: float = 0.3  # e-mail fatigue one newsletter adds (a rebuy message adds 1)
    # purchase rate -> browsing outside intent: the daily chance of an aimless browse is
    # browse_median * (rate / median rate) ** browse_rate_elasticity * exp(browse_noise * z);
    # window shopping (sessions that look like intent and lead nowhere) at window_shopping * sqrt(browse / median)
    browse_median: float = 0.012
    browse_rate_elasticity: float = 0.8
    browse_noise: float = 0.6
    window_shopping: float = 0.012
    # the plain message's base effect (log-multiplier of purchase intent) and whether clicks land on the site
    care_message_tau: float = 0.35
    click_visits: bool = True


TRACES = TraceParams()
_MEDIAN_RATE = 8.1  # median of `purchase_rate` over the trait distribution (orders a year while alive)


def purchase_rate(scale: np.ndarray, shape: np.ndarray, conv: np.ndarray) -> np.ndarray:
    """A customer's true orders per year while alive (renewal of intent episodes, each converting or not).

    The intent gap's mean is scale * Gamma(1 + 1/shape); an episode (truncated geometric length, first day
    at half the conversion) ends in an order with probability 1 - (1 - conv/2) E[(1 - conv)^(L-1)].
    """
    from scipy.special import gamma

    lengths = np.arange(1, 7)
    p_len = np.array([0.5**k for k in range(1, 6)] + [0.5**5])
    no_conv = (1 - conv / 2)[:, None] * (1 - conv)[:, None] ** (lengths[None, :] - 1)
    p_conv = 1.0 - no_conv @ p_len
    return 365.0 / (scale * gamma(1.0 + 1.0 / shape)) * p_conv


def day_rng(seed: int, stream: int, day: int, extra: int = 0) -> np.random.Generator:
    """The generator of one (seed, stream, day): the unit of reproducibility and replay."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, day + 10_000, extra]))


@dataclass(frozen=True)
class SimConfig:
    """What shop to simulate. Defaults are the demo shop (20k customers, 24 months).

    `effects` shapes the true offer effects, so campaign scenarios can be built whose truth favours
    personalising ("heterogeneous"), one arm for everyone ("uniform"), or sending nothing ("none");
    `effect_scale` multiplies every effect.
    """

    customers: int = 20_000
    months: int = 24
    seed: int = 7
    events: bool = True
    start: str = "2024-01-01"
    effects: Literal["heterogeneous", "uniform", "none"] = "heterogeneous"
    effect_scale: float = 1.0
    effect_days: int = 14
    truth_paths: int = 32
    # the shop's regular e-mail newsletter to every customer with e-mail consent, every this many days
    # from the first day of the history (0: none); see `newsletter_day`
    newsletter_every_days: int = 7
    offers: OffersConfig = field(default_factory=OffersConfig)

    def __post_init__(self) -> None:
        if self.customers < 1 or self.months < 1:
            raise ValueError(
                f"SimConfig needs customers >= 1 and months >= 1, got {self.customers}, {self.months}"
            )
        if self.newsletter_every_days < 0:
            raise ValueError(
                f"SimConfig.newsletter_every_days must be >= 0, got {self.newsletter_every_days}"
            )
        if self.effects not in ("heterogeneous", "uniform", "none"):
            raise ValueError(
                f"SimConfig.effects must be heterogeneous, uniform or none, not {self.effects!r}"
            )

    def newsletter_day(self, day: int) -> bool:
        """Whether the newsletter goes out on day `day` (day 0 is the first day of the history)."""
        k = self.newsletter_every_days
        return k > 0 and day % k == 0

    @property
    def start_ts(self) -> pd.Timestamp:
        ts = pd.Timestamp(self.start)
        return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).normalize()

    @property
    def days(self) -> int:
        end = self.start_ts + pd.DateOffset(months=self.months)
        return int((end - self.start_ts).days)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "offers"}
        out["offers"] = self.offers.model_dump(mode="json")
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SimConfig:
        raw = dict(raw)
        offers = OffersConfig.model_validate(raw.pop("offers", {}))
        return cls(**raw, offers=offers)


@dataclass(frozen=True)
class Traits:
    """Hidden per-customer parameters (arrays of length n). Never written to the input tables."""

    signup_day: np.ndarray  # int32, day index of signup
    first_at_signup: np.ndarray  # bool: the first order happens at signup
    scale: np.ndarray  # float64, Weibull scale of the gap until purchase intent (days)
    shape: np.ndarray  # float64, Weibull shape (>1: a regular personal cycle, <1: bursty)
    p_drop: np.ndarray  # float64, probability of going dormant after each order
    asleep: np.ndarray  # float64, the purchase rate of a dormant customer relative to an active one
    conv: np.ndarray  # float64, probability an intent day ends in an order
    value: np.ndarray  # float64, the customer's typical order value
    cat_pref: np.ndarray  # float64 (n, n_categories), category preference
    price_sens: np.ndarray  # float64 in [0, 1]
    averse: np.ndarray  # bool: messages annoy this customer
    revive: np.ndarray  # float64, chance a wake-up gift revives a dropped customer
    engage: np.ndarray  # float64, daily chance of an email open while alive and engaged
    app: np.ndarray  # float64, daily chance of an app session while alive
    browse: np.ndarray  # float64, daily chance of an aimless browse
    tz: np.ndarray  # int8 index into TIMEZONES
    birthday: np.ndarray  # datetime64[D] (NaT when unknown)
    bday_doy: np.ndarray  # int16 day-of-year of the birthday, -1 when unknown
    consent0: np.ndarray  # bool (n, 3): consent at signup for email, sms, push
    noise: np.ndarray  # float64 (n, n_offers): each customer's idiosyncratic response to each offer

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in asdict(self).items()}

    def slice(self, start: int, stop: int) -> Traits:
        return Traits(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})

    def concat(self, more: Traits) -> Traits:
        """These customers followed by `more` (new sign-ups join the end: existing indexes stay valid)."""
        return Traits(
            **{f.name: np.concatenate([getattr(self, f.name), getattr(more, f.name)]) for f in fields(self)}
        )


def draw_traits(cfg: SimConfig) -> Traits:
    """All hidden traits of the history's customers from (seed, STREAM_TRAITS): a pure function of the config."""
    n, days = cfg.customers, cfg.days
    rng = day_rng(cfg.seed, STREAM_TRAITS, 0)
    # acquisition: steady with mild growth; the last weeks still bring new customers
    signup_day = np.floor(days * rng.random(n) ** 0.9).astype(np.int32)
    return _traits_of(rng, signup_day, cfg)


def live_signup_rate(signup_day: np.ndarray, history_days: int, window: int = LIVE_RATE_WINDOW) -> float:
    """Sign-ups per day over the history's last `window` days: the rate the live shop keeps acquiring at."""
    w = max(1, min(window, history_days))
    return float(np.sum(signup_day >= history_days - w)) / w


def draw_live_traits(cfg: SimConfig, block: int, rate: float, block_days: int = LIVE_BLOCK_DAYS) -> Traits:
    """Customers who sign up in live block `block` (days history + block·block_days onwards), from their own
    stream (seed, STREAM_SIGNUPS, block): Poisson(`rate`) a day, traits drawn like the history's customers.

    A pure function of (config, block, rate), so the live shop's new customers do not depend on how the
    days were stepped, and a saved simulator regrows them exactly.
    """
    rng = day_rng(cfg.seed, STREAM_SIGNUPS, block)
    counts = rng.poisson(rate, block_days)
    first = cfg.days + block * block_days
    signup_day = (first + np.repeat(np.arange(block_days), counts)).astype(np.int32)
    return _traits_of(rng, signup_day, cfg)


def _traits_of(rng: np.random.Generator, signup_day: np.ndarray, cfg: SimConfig) -> Traits:
    """Everything but the sign-up day, in a fixed draw order (the history's traits depend on it)."""
    n = len(signup_day)
    first_at_signup = rng.random(n) < 0.85
    # purchase cycle: log-normal scale (heterogeneous rates), shape around 1 (some regular, some bursty)
    scale = np.exp(rng.normal(np.log(18.0), 0.5, n))
    shape = np.exp(rng.normal(np.log(0.8), 0.3, n)).clip(0.4, 3.0)
    p_drop = rng.beta(5.0, 2.0, n)
    asleep = np.exp(rng.normal(np.log(0.05), 0.8, n)).clip(0.0, 0.5)
    conv = rng.beta(5.0, 5.0, n)
    value = np.exp(rng.normal(np.log(42.0), 0.45, n))
    g = rng.gamma(0.5, 1.0, (n, len(CATEGORIES))) + 1e-9
    cat_pref = g / g.sum(axis=1, keepdims=True)
    price_sens = rng.beta(2.0, 2.0, n)
    averse = rng.random(n) < 0.18
    revive = rng.beta(1.2, 5.0, n)
    engage = np.exp(rng.normal(np.log(0.06), 0.8, n)).clip(0.0, 0.6)
    app = np.exp(rng.normal(np.log(0.04), 1.0, n)).clip(0.0, 0.6)
    # aimless browsing follows the purchase rate (a trace of it), with personal noise
    rate = purchase_rate(scale, shape, conv)
    rel = np.log(rate) - np.log(_MEDIAN_RATE)
    z = rng.normal(0.0, 1.0, n)
    browse = (
        TRACES.browse_median * np.exp(TRACES.browse_rate_elasticity * rel + TRACES.browse_noise * z)
    ).clip(0.0, 0.5)
    shares = np.array([t[2] for t in TIMEZONES])
    tz = rng.choice(len(TIMEZONES), size=n, p=shares / shares.sum()).astype(np.int8)
    known = rng.random(n) < 0.8
    age_days = rng.integers(18 * 365, 70 * 365, n)
    birthday = np.datetime64(cfg.start_ts.date().isoformat(), "D") - age_days.astype("timedelta64[D]")
    birthday = np.where(known, birthday, np.datetime64("NaT", "D"))
    doy = pd.DatetimeIndex(birthday).dayofyear.to_numpy()
    bday_doy = np.where(known, np.nan_to_num(doy, nan=-1), -1).astype(np.int16)
    consent0 = rng.random((n, 3)) < np.array([0.72, 0.25, 0.45])
    noise = rng.normal(0.0, 0.15, (n, len(SIM_OFFERS)))
    return Traits(
        signup_day=signup_day,
        first_at_signup=first_at_signup,
        scale=scale,
        shape=shape,
        p_drop=p_drop,
        asleep=asleep,
        conv=conv,
        value=value,
        cat_pref=cat_pref,
        price_sens=price_sens,
        averse=averse,
        revive=revive,
        engage=engage,
        app=app,
        browse=browse,
        tz=tz,
        birthday=birthday,
        bday_doy=bday_doy,
        consent0=consent0,
        noise=noise,
    )


def season_factor(start: pd.Timestamp, day0: int, ndays: int) -> np.ndarray:
    """Shop-wide multiplier of purchase intent per day: year cycle, weekends, sales and holidays."""
    dates = pd.date_range(start + pd.Timedelta(days=day0), periods=ndays, freq="D")
    doy = dates.dayofyear.to_numpy()
    f = 1.0 + 0.12 * np.sin(2 * np.pi * (doy - 300) / 365.25)
    f = f * np.where(dates.dayofweek.to_numpy() >= 5, 1.12, 1.0)
    month, dom = dates.month.to_numpy(), dates.day.to_numpy()
    f = f * np.where((month == 11) & (dom == 11), 2.0, 1.0)  # Singles' Day
    f = f * np.where((month == 6) & (dom >= 16) & (dom <= 18), 1.5, 1.0)  # 618
    # Black Friday to Cyber Monday: the Friday after the fourth Thursday of November
    bf = np.array([_black_friday(y) for y in dates.year.to_numpy()], dtype="datetime64[D]")
    delta = (dates.tz_localize(None).to_numpy().astype("datetime64[D]") - bf).astype(int)
    f = f * np.where((delta >= 0) & (delta <= 3), 2.0, 1.0)
    f = f * np.where((month == 12) & (dom >= 1) & (dom <= 20), 1.35, 1.0)
    f = f * np.where((month == 12) & (dom >= 24) & (dom <= 26), 0.6, 1.0)
    f = f * np.where((month == 1) & (dom >= 2) & (dom <= 10), 1.15, 1.0)
    return f.astype(np.float64)


def holiday_sale(start: pd.Timestamp, day0: int, ndays: int) -> np.ndarray:
    """Days with a shop-wide sale (orders then often carry a promotional discount)."""
    return season_factor(start, day0, ndays) >= 1.45


def _black_friday(year: int) -> np.datetime64:
    nov1 = pd.Timestamp(year=year, month=11, day=1)
    first_thu = nov1 + pd.Timedelta(days=(3 - nov1.dayofweek) % 7)
    return np.datetime64((first_thu + pd.Timedelta(days=22)).date().isoformat(), "D")
