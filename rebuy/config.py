"""Typed configuration, loaded explicitly from one TOML file and passed down.

Every field has the embedded default, so `Config()` is a working local set-up (files, SQLite,
MLflow with a SQLite backend store) and a user's `rebuy.toml` only states what differs.
Nothing here reads the environment or the disk at import time.
"""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rebuy.contract import CHANNELS, EVENT_TYPES, OFFERS


class _Section(BaseModel):
    # Unknown keys are almost always typos in a user's rebuy.toml: refuse them.
    model_config = ConfigDict(extra="forbid")


class PathsConfig(_Section):
    data_dir: Path = Path("data")

    def resolve(self, base: Path) -> PathsConfig:
        return PathsConfig(data_dir=(base / self.data_dir).resolve())

    @property
    def canonical(self) -> Path:
        """Validated, imported tables (Parquet) — the only input the stages read."""
        return self.data_dir / "canonical"

    @property
    def feast_dir(self) -> Path:
        return self.data_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def runtime_dir(self) -> Path:
        """Locks, outbox sinks, prediction logs: what the running system writes."""
        return self.data_dir / "runtime"


class DialectConfig(_Section):
    """How the user's CSV files are written (ignored for Parquet)."""

    delimiter: str = ","
    decimal: str = "."
    thousands: str | None = None
    encoding: str = "utf-8"
    header: bool = True
    # strftime-style format for timestamps; None lets pandas parse ISO 8601.
    date_format: str | None = None
    # IANA zone for naive timestamps; None means naive timestamps are an error.
    timezone: str | None = None


class TableSource(_Section):
    """One input table: where it is and what its columns are called in the user's file."""

    path: Path | None = None
    # canonical name -> the user's column name (only the ones that differ)
    columns: dict[str, str] = Field(default_factory=dict)
    # when header = false: the user's columns in file order (canonical names)
    column_order: list[str] | None = None


class CampaignImportConfig(_Section):
    """A past campaign export: one row per customer, the arm they got, outcomes observed after the send.

    Column roles name the user's columns; attributes default to every column without another role,
    and categorical attributes to those whose values are not all numbers.
    """

    path: Path | None = None
    dialect: DialectConfig | None = None  # None: the [import] dialect
    customer_id: str | None = None
    arm: str = "arm"
    control: str = "none"  # rebuy's own name for the no-message arm
    # the arms the campaign had; when given, any other arm value is an error
    arms: list[str] | None = None
    # the logged probability of the arm each customer got; None: arm shares (randomisation assumed)
    propensity: str | None = None
    outcomes: list[str] = Field(default_factory=lambda: ["converted"])
    attributes: list[str] | None = None
    categorical: list[str] | None = None
    # an arm with fewer rows cannot be learned from
    min_rows_per_arm: int = 200
    # cost per send of each arm, by its name in the export (e.g. "Mens E-Mail" = 0.15); overrides the
    # offer catalogue for arms named like offers; arms named nowhere cost 0
    arm_costs: dict[str, float] = Field(default_factory=dict)


class ImportConfig(_Section):
    dialect: DialectConfig = Field(default_factory=DialectConfig)
    campaign: CampaignImportConfig = Field(default_factory=CampaignImportConfig)
    customers: TableSource = Field(default_factory=TableSource)
    orders: TableSource = Field(default_factory=TableSource)
    events: TableSource = Field(default_factory=TableSource)
    consent_updates: TableSource = Field(default_factory=TableSource)
    messages: TableSource = Field(default_factory=TableSource)  # sends of the shop's own tools
    # the shop's own event names -> rebuy's event_type vocabulary
    event_type_map: dict[str, str] = Field(default_factory=dict)
    # negative order amounts: "returned_amount" maps them onto the original order, "reject" refuses
    returns: Literal["reject", "returned_amount"] = "reject"
    # how many offending rows an error message shows
    error_rows: int = 5

    @model_validator(mode="after")
    def _event_map_targets_known(self) -> ImportConfig:
        bad = sorted(set(self.event_type_map.values()) - set(EVENT_TYPES))
        if bad:
            raise ValueError(
                f"event_type_map maps onto unknown event types {bad}; known: {list(EVENT_TYPES)}"
            )
        return self


class HorizonsConfig(_Section):
    churn_days: int = 60
    repurchase_days: int = 30
    value_days: int = 180


class FeaturesConfig(_Section):
    # cutoffs of point-in-time training sets: every `cutoff_step_days` over `history_days`
    cutoff_step_days: int = 14
    history_days: int = 365
    # offline store measured on historical retrieval (benchmarks/features.py): the faster is default
    offline_store: Literal["file", "duckdb"] = "duckdb"
    burst_window_minutes: int = 60
    engagement_recent_days: int = 14
    engagement_baseline_days: int = 56


class SparkConfig(_Section):
    """The Spark session rebuy starts (one per process); a cluster is another `master`."""

    master: str = "local[2]"
    driver_memory: str = "4g"
    # small for local mode and tests; a cluster wants ~2-4 x its cores
    shuffle_partitions: int = 8
    # where Spark spills and where rebuy stages its inputs as Parquet; None -> a temporary folder
    local_dir: Path | None = None
    # any other spark.* setting, passed as is
    conf: dict[str, str] = Field(default_factory=dict)


class EngineConfig(_Section):
    """Where features, point-in-time sets and batch scores are computed: embedded DuckDB or Spark."""

    compute: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkConfig = Field(default_factory=SparkConfig)


class OptunaConfig(_Section):
    """Optuna's budget is a number of trials, never wall time: the same data and config give the same model
    (byte for byte) at any machine load."""

    trials: int = Field(default=20, ge=1)
    early_stopping_rounds: int = Field(default=30, ge=1)
    seed: int = 7

    @model_validator(mode="before")
    @classmethod
    def _no_wall_time_budget(cls, data: Any) -> Any:
        if isinstance(data, dict) and "timeout_seconds" in data:
            raise ValueError(
                "training.optuna.timeout_seconds is gone: a wall-time budget gave different models at "
                "different machine loads. Remove it and set training.optuna.trials (the number of trials)."
            )
        return data


class SegmentsConfig(_Section):
    """The seeds' segments from churn risk and expected value."""

    high_value_quantile: float = 0.8
    dormant_churn: float = 0.7
    potential_churn: float = 0.4


class TrainingConfig(_Section):
    optuna: OptunaConfig = Field(default_factory=OptunaConfig)
    test_cutoffs: int = 2
    valid_cutoffs: int = 2
    # a challenger must beat the champion's test metric by this much to be promoted
    promotion_margin: float = 0.002
    # above this many training rows, keep every positive and a customer-hash share of the negatives
    # (weighted by the inverse share; training.sampling); None = never sample
    max_rows: int | None = None
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)


class OfferConfig(_Section):
    cost: float = 0.0
    # cost per redeemed offer as a share of the order's revenue (coupon 10% -> 0.10)
    redemption_share: float = 0.0
    channel: str = "email"


def _default_offers() -> dict[str, OfferConfig]:
    return {
        "none": OfferConfig(cost=0.0, channel="none"),
        "care_message": OfferConfig(cost=0.0),
        "coupon_10pct": OfferConfig(cost=0.02, redemption_share=0.10),
        "free_shipping": OfferConfig(cost=0.02, redemption_share=0.0, channel="email"),
        "points_x2": OfferConfig(cost=0.01, redemption_share=0.01, channel="push"),
        "wake_up_gift": OfferConfig(cost=3.0, channel="email"),
    }


class OffersConfig(_Section):
    catalogue: dict[str, OfferConfig] = Field(default_factory=_default_offers)
    # gross margin on revenue, to turn incremental revenue into incremental margin
    margin: float = 0.35
    # free shipping's cost per redeemed order (the shipping the shop pays)
    shipping_cost: float = 4.9
    attribution_days: int = 14
    exploration: Literal["epsilon", "softmax"] = "epsilon"
    exploration_share: float = 0.10
    # exploration goes mostly to customers not messaged in the last `explore_rest_days`; among recently
    # contacted ones only `explore_recent_share` (logged in each distribution), so the effect of one more
    # message stays learnable without spending the whole exploration budget on fatigued customers
    explore_rest_days: int = Field(default=14, ge=0)
    explore_recent_share: float = Field(default=0.02, ge=0.0, le=1.0)
    softmax_temperature: float = 1.0
    # optional budget per run: max count per offer
    budget_count: dict[str, int] = Field(default_factory=dict)
    budget_spend: float | None = None

    @model_validator(mode="after")
    def _known_offers(self) -> OffersConfig:
        unknown = sorted(set(self.catalogue) - set(OFFERS))
        if unknown:
            raise ValueError(
                f"unknown offers {unknown}; known: {list(OFFERS)}. An imported campaign's arms get "
                "their cost per send in [import.campaign] arm_costs, by the arm's name in the export"
            )
        if "none" not in self.catalogue:
            raise ValueError("the offer catalogue must contain 'none'")
        return self


class TriggerConfig(_Section):
    name: str
    kind: Literal[
        "first_purchase", "browse_no_buy", "inactive", "birthday", "holiday_eve", "churn_risk", "cycle_due"
    ]
    campaign: str
    offers: list[str]
    channel: str = "email"
    days: int | None = None
    threshold: float | None = None
    control_share: float = 0.10


def _default_triggers() -> list[TriggerConfig]:
    return [
        TriggerConfig(
            name="first_purchase",
            kind="first_purchase",
            campaign="welcome",
            days=3,
            offers=["care_message", "coupon_10pct"],
        ),
        TriggerConfig(
            name="browse_no_buy",
            kind="browse_no_buy",
            campaign="browse_recovery",
            days=1,
            offers=["care_message", "coupon_10pct", "free_shipping"],
            channel="push",
        ),
        TriggerConfig(
            name="inactive_30d",
            kind="inactive",
            campaign="wake_up",
            days=30,
            offers=["wake_up_gift", "coupon_10pct", "points_x2"],
        ),
        TriggerConfig(
            name="birthday",
            kind="birthday",
            campaign="birthday",
            days=1,
            offers=["coupon_10pct", "points_x2"],
        ),
        TriggerConfig(
            name="holiday_eve",
            kind="holiday_eve",
            campaign="holiday",
            days=2,
            offers=["coupon_10pct", "points_x2"],
        ),
        TriggerConfig(
            name="churn_risk",
            kind="churn_risk",
            campaign="retention",
            threshold=0.6,
            offers=[o for o in OFFERS if o != "none"],
        ),
        TriggerConfig(
            name="cycle_due",
            kind="cycle_due",
            campaign="replenish",
            days=3,
            offers=[o for o in OFFERS if o != "none"],
        ),
    ]


class CapsConfig(_Section):
    # channel -> (max messages, rolling window in days)
    per_channel: dict[str, tuple[int, int]] = Field(
        default_factory=lambda: {"email": (1, 3), "sms": (1, 7), "push": (1, 2)}
    )
    all_channels: tuple[int, int] = (3, 7)
    quiet_hours: tuple[int, int] = (21, 8)  # local time [start, end)
    # the shop's other sends (the `messages` table's newsletters and imported sends) count toward these
    # caps, as contact policies in the field count every outbound message; rebuy's own come from its log
    count_newsletters: bool = True


class HolidayConfig(_Section):
    """A shopping holiday the holiday-eve trigger looks ahead to: every year on month/day, or once on `date`
    (for holidays that move, e.g. Black Friday or Lunar New Year: one entry per year)."""

    name: str = Field(min_length=1, max_length=40)
    month: int | None = Field(default=None, ge=1, le=12)
    day: int | None = Field(default=None, ge=1, le=31)
    date: datetime.date | None = None

    @model_validator(mode="after")
    def _one_kind_of_date(self) -> HolidayConfig:
        if self.date is not None and (self.month is not None or self.day is not None):
            raise ValueError(f"holiday {self.name!r}: give either month and day (every year) or date (once)")
        if self.date is None:
            if self.month is None or self.day is None:
                raise ValueError(f"holiday {self.name!r}: needs month and day, or date")
            try:
                datetime.date(2024, self.month, self.day)  # a leap year: 29 Feb is allowed, 31 Apr is not
            except ValueError:
                raise ValueError(
                    f"holiday {self.name!r}: month {self.month}, day {self.day} is no date"
                ) from None
        return self


def _default_holidays() -> list[HolidayConfig]:
    # the seeds' calendar (618 and Singles' Day) plus the common western ones
    return [
        HolidayConfig(name="new_year", month=1, day=1),
        HolidayConfig(name="valentines", month=2, day=14),
        HolidayConfig(name="618", month=6, day=18),
        HolidayConfig(name="singles_day", month=11, day=11),
        HolidayConfig(name="christmas", month=12, day=25),
    ]


class ScheduleConfig(_Section):
    """When passes run. Quiet hours are local, so a once-a-day pass at a fixed UTC hour never reaches the
    customers whose night it is then; hourly passes (cron `0 * * * *` for `rebuy run`, or `rebuy loop`)
    reach everyone at some waking hour, and `spacing_hours` keeps it to one decision per customer per day."""

    # hours between passes (a divisor of 24); the closed loop runs passes at start_hour + k * every_hours UTC
    every_hours: int = 1
    start_hour: int = Field(default=0, ge=0, le=23)
    # a customer decided (any group, any campaign) less than this many hours before or after a pass is
    # not decided again by it
    spacing_hours: int = Field(default=24, ge=0)

    @model_validator(mode="after")
    def _divides_the_day(self) -> ScheduleConfig:
        if self.every_hours < 1 or 24 % self.every_hours:
            raise ValueError(
                f"policy.schedule.every_hours must divide 24 (1, 2, 3, 4, 6, 8, 12, 24), "
                f"got {self.every_hours}"
            )
        return self


class PolicyConfig(_Section):
    holdout_share: float = 0.05
    holdout_salt: str = "rebuy-holdout-v1"
    caps: CapsConfig = Field(default_factory=CapsConfig)
    triggers: list[TriggerConfig] = Field(default_factory=_default_triggers)
    # customers per /score request (the orchestrator sends at most [serving] max_batch)
    score_batch_size: int = Field(default=1000, ge=1)
    # /score requests in flight at once: each service worker scores one batch while the orchestrator decodes
    # another (benchmarks/loop.py --part pass: 1000 x 3 against 2 workers)
    score_concurrency: int = Field(default=3, ge=1, le=16)
    holidays: list[HolidayConfig] = Field(default_factory=_default_holidays)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @model_validator(mode="after")
    def _holidays_unique(self) -> PolicyConfig:
        # the holiday's name and year make the decision id: two entries sharing both would collide
        keys = [(h.name, h.date.year if h.date else None) for h in self.holidays]
        dup = sorted({k[0] for k in keys if keys.count(k) > 1 or (k[1] is not None and (k[0], None) in keys)})
        if dup:
            raise ValueError(
                f"policy.holidays: {dup} given twice (a moving holiday: one dated entry per year)"
            )
        return self


def _url_password(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


class StoresConfig(_Section):
    """Where each piece of state lives. Every default (None / "sqlite" / "parquet") is the embedded one under
    the data directory; the shared-infrastructure choices are Postgres and Redis URLs (README, "Run on
    shared infrastructure"). URLs never hold a password: it is the secret `database_password` /
    `redis_password` (rebuy.secrets), so rebuy.toml can be committed and printed."""

    # an error must not echo a URL back: it may hold the password it is refusing
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # MLflow tracking (runs) and registry (aliases); e.g. postgresql+psycopg://rebuy@db:5432/mlflow.
    # None: SQLite under <data_dir>/mlflow. The registry defaults to the tracking URI.
    mlflow_tracking_uri: str | None = None
    mlflow_registry_uri: str | None = None
    # where new MLflow experiments put their artifacts (a folder, file:// or s3://... URI);
    # None: <data_dir>/mlflow/artifacts
    mlflow_artifact_root: str | None = None
    # decision log, outbox and forget list (SQLAlchemy URL; Postgres also takes the pass lock there)
    decision_log_url: str | None = None
    # Optuna studies (SQLAlchemy URL); None: SQLite under <data_dir>/optuna
    optuna_storage: str | None = None
    # "sqlite" (rebuy's packed SQLite store under <data_dir>/feast) or "redis://host:port/db"
    online_store: str = "sqlite"
    # what serving writes its prediction log to (drift's "current" data): "parquet" (files under
    # <data_dir>/runtime) or a SQLAlchemy URL (a table `prediction_log`, shared by every worker and host)
    prediction_log: str = "parquet"
    # a name that keeps this installation's keys apart on shared servers: the Feast project (and so every
    # Redis key) becomes rebuy_<namespace>, the Postgres advisory lock key is derived from it
    namespace: str = Field(default="", pattern=r"^[a-z0-9_]{0,40}$")
    # a folder of secret files (rebuy.secrets), each readable by its owner only
    secrets_dir: Path | None = None

    @model_validator(mode="after")
    def _urls_are_usable(self) -> StoresConfig:
        for name in (
            "mlflow_tracking_uri",
            "mlflow_registry_uri",
            "decision_log_url",
            "optuna_storage",
            "online_store",
            "prediction_log",
        ):
            url = getattr(self, name)
            if url and _url_password(url):
                raise ValueError(
                    f"stores.{name} holds a password; secrets never go in rebuy.toml: remove it from the URL "
                    "and set REBUY_DATABASE_PASSWORD / REBUY_REDIS_PASSWORD (or a 0600 file, see rebuy.secrets)"
                )
        if self.optuna_storage and self.optuna_storage in (
            self.mlflow_tracking_uri,
            self.mlflow_registry_uri,
        ):
            raise ValueError(
                "stores.optuna_storage is the MLflow database: both keep their schema version in a table named "
                "alembic_version and would break each other; give Optuna its own database (or a schema: "
                "...?options=-csearch_path%3Doptuna)"
            )
        if self.online_store != "sqlite" and not self.online_store.startswith(("redis://", "rediss://")):
            raise ValueError(
                f'stores.online_store = {self.online_store!r}: use "sqlite" or a redis:// URL '
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        if self.prediction_log != "parquet" and "://" not in self.prediction_log:
            raise ValueError(
                f'stores.prediction_log = {self.prediction_log!r}: use "parquet" or a SQLAlchemy URL '
                "(e.g. postgresql+psycopg://rebuy@127.0.0.1:5432/rebuy)"
            )
        return self


def _secret_not_here(data: Any, section: str, key: str, name: str) -> Any:
    """Secrets never live in rebuy.toml (it is shared, committed, world-readable): say where they go."""
    if isinstance(data, dict) and key in data:
        raise ValueError(
            f"{section}.{key} is a secret and is not read from rebuy.toml: remove it and set "
            f"REBUY_{name.upper()} (or REBUY_{name.upper()}_FILE, or the file {name} in "
            "[stores] secrets_dir), readable by its owner only (chmod 600)"
        )
    return data


class SinkConfig(_Section):
    kind: Literal["jsonl", "webhook"] = "jsonl"
    path: Path | None = None
    url: str | None = None
    # the webhook refuses to send unsigned messages unless this is set; the signing key is the
    # secret `webhook_secret` (rebuy.secrets)
    allow_unsigned: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_toml(cls, data: Any) -> Any:
        return _secret_not_here(data, "sink", "hmac_secret", "webhook_secret")


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 1
    max_batch: int = 1000
    prediction_log_max_rows: int = 200_000
    prediction_log_sample: float = 1.0
    url: str | None = None  # what the orchestrator calls; default http://host:port

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_toml(cls, data: Any) -> Any:
        # the admin token and the API key are the secrets `admin_token` and `api_key` (rebuy.secrets)
        for key in ("admin_token", "api_key"):
            data = _secret_not_here(data, "serving", key, key)
        return data


class DriftConfig(_Section):
    """Drift monitoring; the reasons for each choice are in pipelines/drift.py and drift_stats.py."""

    reference_sample: int = 5000
    current_sample: int = 5000
    # share of drifted features above which the status is warning / drift
    warning_share: float = 0.2
    drift_share: float = 0.3
    # p-value threshold, kept for users' configs; the status uses the effect sizes below
    stattest_threshold: float = 0.05
    # per-column effect size (reference-std units / Cohen's h, w) for warning / drift
    warning_effect: float = 0.1
    drift_effect: float = 0.15
    # noise floor: mean + noise_z * sd of the effect over this many label permutations. The null of a
    # Wasserstein distance is right-skewed, so the z that keeps ~45 columns at <= 5% false alarms per
    # model is well above the normal-theory Bonferroni 3.3 (benchmarks/drift.py measures it)
    permutations: int = 30
    noise_z: float = 4.5
    # missing share rising by this much is a data-quality warning
    missing_delta: float = 0.05
    current_window_days: int = 14
    # kept for users' configs: the reference is now the champion's most recent rows, matched on tenure
    season_window_days: int = 45
    min_reference_rows: int = 1000
    min_labelled_rows: int = 200
    auc_drop: float = 0.05
    mae_rise: float = 0.2
    # matured served predictions: mean prediction off the observed rate by this share (and outside its
    # 95% interval) is a calibration drift
    calibration_tolerance: float = 0.2
    # columns given full value statistics in the Evidently report (the most moved ones)
    detail_columns: int = 8
    seed: int = 7


class SimulatorConfig(_Section):
    customers: int = 20_000
    months: int = 24
    seed: int = 7
    start: str = "2024-01-01"


class Config(_Section):
    paths: PathsConfig = Field(default_factory=PathsConfig)
    import_: ImportConfig = Field(default_factory=ImportConfig, alias="import")
    horizons: HorizonsConfig = Field(default_factory=HorizonsConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    offers: OffersConfig = Field(default_factory=OffersConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    stores: StoresConfig = Field(default_factory=StoresConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _triggers_use_known_offers(self) -> Config:
        for t in self.policy.triggers:
            unknown = sorted(set(t.offers) - set(self.offers.catalogue))
            if unknown:
                raise ValueError(f"trigger {t.name!r} names offers not in the catalogue: {unknown}")
            if t.channel not in CHANNELS:
                raise ValueError(
                    f"trigger {t.name!r}: unknown channel {t.channel!r}; known: {list(CHANNELS)}"
                )
        return self

    @property
    def mlflow_uri(self) -> str:
        """MLflow tracking URI (runs, metrics, artifacts' locations)."""
        return self.stores.mlflow_tracking_uri or f"sqlite:///{self.paths.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_registry_uri(self) -> str:
        """MLflow model registry URI (versions and aliases); the tracking URI unless set apart."""
        return self.stores.mlflow_registry_uri or self.mlflow_uri

    @property
    def mlflow_artifact_root(self) -> str:
        """Artifact location of experiments rebuy creates: a URI (file://, s3://, ...)."""
        root = self.stores.mlflow_artifact_root
        if root is None:
            return (self.paths.mlflow_dir / "artifacts").resolve().as_uri()
        if "://" in root:
            return root
        return Path(root).resolve().as_uri()

    @property
    def decision_log_url(self) -> str:
        return self.stores.decision_log_url or f"sqlite:///{self.paths.data_dir / 'decisions.db'}"

    @property
    def optuna_storage_url(self) -> str:
        return self.stores.optuna_storage or f"sqlite:///{self.paths.data_dir / 'optuna' / 'studies.db'}"

    @property
    def feast_project(self) -> str:
        """The Feast project: every online-store key and table carries it (stores.namespace)."""
        return f"rebuy_{self.stores.namespace}" if self.stores.namespace else "rebuy"

    @property
    def serving_url(self) -> str:
        return self.serving.url or f"http://{self.serving.host}:{self.serving.port}"


class ConfigError(ValueError):
    """A config file that cannot be used; the message says which file and key."""


def load_config(path: Path | None = None, *, data_dir: Path | None = None) -> Config:
    """Load `path` (TOML) over the embedded defaults; relative paths resolve against its folder.

    Also hands the `database_password` secret (if configured) to libpq for this process and its children
    (rebuy.secrets.database_env): every Postgres store then connects without a password in any URL.
    """
    raw: dict = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass --config with an existing rebuy.toml")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        base = path.parent
    stores_raw = raw.get("stores")
    if isinstance(stores_raw, dict):  # checked before pydantic, whose errors echo the input back
        for key, url in stores_raw.items():
            if isinstance(url, str) and _url_password(url):
                raise ConfigError(
                    f"{path}: stores.{key} holds a password; secrets never go in rebuy.toml: remove it from "
                    "the URL and set REBUY_DATABASE_PASSWORD / REBUY_REDIS_PASSWORD (or a 0600 file, see "
                    "rebuy.secrets)"
                )
    try:
        cfg = Config.model_validate(raw)
    except ValueError as exc:
        where = path if path is not None else "the embedded defaults"
        raise ConfigError(f"{where}: {exc}") from exc
    paths = PathsConfig(data_dir=data_dir) if data_dir is not None else cfg.paths
    imp = cfg.import_
    tables = {t: getattr(imp, t) for t in ("customers", "orders", "events", "consent_updates", "messages")}
    resolved = {
        t: src.model_copy(update={"path": base / src.path})
        for t, src in tables.items()
        if src.path is not None and not src.path.is_absolute()
    }
    stores = cfg.stores
    if stores.secrets_dir is not None and not stores.secrets_dir.is_absolute():
        stores = stores.model_copy(update={"secrets_dir": (base / stores.secrets_dir).resolve()})
    root = stores.mlflow_artifact_root
    if root is not None and "://" not in root and not Path(root).is_absolute():
        stores = stores.model_copy(update={"mlflow_artifact_root": str((base / root).resolve())})
    out = cfg.model_copy(
        update={"paths": paths.resolve(base), "import_": imp.model_copy(update=resolved), "stores": stores}
    )
    from rebuy.secrets import database_env

    database_env(out)  # the Postgres password (if any) for this process and those it starts
    return out
