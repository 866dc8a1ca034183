"""`rebuy import-decisions`: a shop's past randomized campaigns into the decision log, validated, all or nothing.

Why: the offer model learns from randomized decisions joined to the orders that followed them. A shop that
ran randomized campaigns before rebuy (or an A/B test in its mail tool) already has that data; importing it
lets `rebuy train offer` learn and promote an offer model on day one instead of after weeks of rebuy's own
exploration. The file must be in the decision-log shape (`rebuy simulate --campaign` writes one,
`campaign/decisions.parquet`): one row per decision with the probability the chosen offer had
(`propensity`) and the whole action distribution. Rows must be randomized (a distribution over at least
two actions) to teach anything; forced rows are kept (they were sent) but the offer model ignores them.

Imported decisions were sent in the past: their outbox rows are stored as already sent, so nothing is
messaged again. Decision ids already in the log are skipped (rerunning an import changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.policy_layer import DECISION_COLUMNS
from rebuy.config import Config
from rebuy.errors import DataError, RebuyError

REQUIRED = ("decision_id", "customer_id", "decided_at", "offer", "propensity", "distribution")
JSON_DEFAULTS: Mapping[str, Any] = {"model_versions": {}, "scores": {}, "reasons": []}
TOLERANCE = 1e-6


@dataclass(frozen=True)
class DecisionImport:
    """What an import found and did."""

    file: str
    rows: int
    randomized: int
    already_logged: int
    written: int
    campaigns: dict[str, int]
    offers: dict[str, int]


def read_decisions_file(path: Path) -> pd.DataFrame:
    """Parquet or CSV by suffix; ids kept as strings exactly as given."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path), hint="pass the decision-log export to import")
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".txt"):
        df = pd.read_csv(path, dtype={"decision_id": str, "customer_id": str})
    else:
        raise DataError(
            f"unknown file type {path.suffix!r}", file=str(path), hint="give a .parquet or .csv file"
        )
    return df


def _parse_json(v: Any, default: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return default
    if isinstance(v, str):
        return json.loads(v) if v.strip() else default
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _bad(mask: np.ndarray | pd.Series) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask, dtype=bool))[:5]]


def _aware_times(d: pd.DataFrame, file: str) -> pd.Series:
    """`decided_at` as UTC; naive or unparseable times are an error (a naive time's zone is a guess)."""
    raw = d["decided_at"]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw):
        bad = pd.Series(True, index=raw.index)
    else:
        text = raw.astype(str).str.strip()
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        bad = parsed.isna() | ~text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        if not bad.any():
            return parsed
    raise DataError(
        "decided_at must be timestamps with a time zone (e.g. 2025-03-01T09:00:00Z)",
        file=file,
        column="decided_at",
        rows=d.loc[bad, ["decision_id", "decided_at"]].head(5),
        hint="write times in UTC with an offset; a naive time's zone would be a guess",
    )


def validate_decisions(
    df: pd.DataFrame,
    cfg: Config,
    as_of: pd.Timestamp,
    *,
    file: str,
    known_customers: pd.Series | None = None,
) -> pd.DataFrame:
    """Pure: check a decision export against the decision-log contract and return it in the log's shape.

    Checks: required columns; unique, non-empty decision ids; tz-aware `decided_at` not after `as_of`;
    offers in the catalogue; each distribution a mapping over catalogue offers summing to 1 that gives the
    chosen offer exactly its `propensity` (what off-policy estimates divide by); customers known to the
    shop (when `known_customers` is given). Missing optional columns get the log's defaults.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(
            f"missing required columns {missing}",
            file=file,
            column=missing[0],
            hint=f"a decision export needs {list(REQUIRED)} (see `rebuy simulate --campaign`)",
        )
    if df.empty:
        raise DataError("no decisions in the file", file=file, hint="export at least one decision")
    d = df.copy().reset_index(drop=True)
    for c in ("decision_id", "customer_id"):
        empty = d[c].isna() | (d[c].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(
                "empty ids", file=file, column=c, row_numbers=_bad(empty), hint="every row needs an id"
            )
        d[c] = d[c].astype(str)
    dup = d["decision_id"].duplicated(keep=False)
    if dup.any():
        raise DataError(
            "duplicate decision ids",
            file=file,
            column="decision_id",
            rows=d.loc[dup, ["decision_id", "customer_id"]].head(5),
            hint="each decision is logged once; drop or rename the duplicates",
        )
    d["decided_at"] = _aware_times(d, file)
    late = d["decided_at"] > as_of
    if late.any():
        raise DataError(
            f"decisions after --as-of {as_of}",
            file=file,
            column="decided_at",
            rows=d.loc[late, ["decision_id", "decided_at"]].head(5),
            hint="import only decisions that were made before now (or pass a later --as-of)",
        )
    cat = cfg.offers.catalogue
    unknown = ~d["offer"].astype(str).isin(list(cat))
    if unknown.any():
        raise DataError(
            f"offers not in the catalogue {sorted(cat)}",
            file=file,
            column="offer",
            rows=d.loc[unknown, ["decision_id", "offer"]].head(5),
            hint="map the campaign's arms onto the configured offers ([offers.catalogue] in rebuy.toml)",
        )
    d["offer"] = d["offer"].astype(str)
    p = pd.to_numeric(d["propensity"], errors="coerce")
    badp = p.isna() | ~np.isfinite(p) | (p <= 0) | (p > 1)
    if badp.any():
        raise DataError(
            "propensity must be a number in (0, 1]",
            file=file,
            column="propensity",
            rows=d.loc[badp, ["decision_id", "propensity"]].head(5),
            hint="log the probability with which each row's offer was chosen",
        )
    d["propensity"] = p.astype(float)
    try:
        dist = [_parse_json(v, None) for v in d["distribution"]]
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataError(
            f"distribution is not JSON: {exc}",
            file=file,
            column="distribution",
            hint='write each row\'s action distribution as JSON, e.g. {"none": 0.5, "coupon_10pct": 0.5}',
        ) from exc

    def dist_ok(v: Any, offer: str, prop: float) -> bool:
        if not isinstance(v, Mapping) or not v or set(v) - set(cat):
            return False
        vals = np.array([float(x) for x in v.values()])
        return bool(
            (vals >= 0).all()
            and abs(vals.sum() - 1) <= TOLERANCE
            and abs(float(v.get(offer, 0.0)) - prop) <= TOLERANCE
        )

    okd = np.array(
        [dist_ok(v, o, q) for v, o, q in zip(dist, d["offer"], d["propensity"], strict=True)], dtype=bool
    )
    if (~okd).any():
        raise DataError(
            "distribution must map catalogue offers to probabilities that sum to 1 and give the chosen "
            "offer its propensity",
            file=file,
            column="distribution",
            rows=d.loc[~okd, ["decision_id", "offer", "propensity", "distribution"]].head(5),
            hint="export the randomization's probabilities per offer for every decision",
        )
    d["distribution"] = pd.Series([{str(k): float(x) for k, x in v.items()} for v in dist], index=d.index)
    if known_customers is not None:
        unknown_c = ~d["customer_id"].isin(set(known_customers.astype(str)))
        if unknown_c.any():
            raise DataError(
                f"{int(unknown_c.sum())} decisions for customers the shop does not know",
                file=file,
                column="customer_id",
                rows=d.loc[unknown_c, ["decision_id", "customer_id"]].head(5),
                hint="import the shop's customers and orders first (`rebuy import`), with the same ids",
            )
    stem = Path(file).stem
    if "campaign" not in d:
        d["campaign"] = stem
    d["campaign"] = d["campaign"].fillna(stem).astype(str)
    if "trigger" not in d:
        d["trigger"] = "campaign"
    if "episode" not in d:
        d["episode"] = d["campaign"] + ":" + d["decided_at"].dt.strftime("%Y-%m-%d")
    if "channel" not in d:
        d["channel"] = [cat[o].channel if o != "none" else "none" for o in d["offer"]]
    if "group" not in d:
        d["group"] = np.where(d["offer"] == "none", "control", "treatment")
    for c, default in JSON_DEFAULTS.items():
        d[c] = [_parse_json(v, default) for v in d[c]] if c in d else [default for _ in range(len(d))]
    if "segment" not in d:
        d["segment"] = None
    d["note"] = ("imported from " + Path(file).name)[:128]
    for c in ("trigger", "campaign", "episode", "channel", "group"):
        d[c] = d[c].astype(str)
    return d[list(DECISION_COLUMNS)]


def import_decisions(cfg: Config, path: Path, as_of: pd.Timestamp) -> DecisionImport:
    """Validate the file against the contract and the shop's customers, then write it into the decision log
    in one transaction (outbox rows stored as already sent). Nothing is written when anything is wrong."""
    from pipelines import decision_log as dlog
    from rebuy.ingest import read_canonical

    try:
        customers = read_canonical(cfg.paths.data_dir)["customers"]["customer_id"]
    except DataError as exc:
        raise RebuyError(
            f"import the shop's tables before its past decisions (`rebuy import`): {exc.problem}"
        ) from exc
    d = validate_decisions(read_decisions_file(path), cfg, as_of, file=str(path), known_customers=customers)
    with dlog.connect(cfg.decision_log_url) as engine, engine.begin() as conn:
        before = dlog.existing_ids(conn, d["decision_id"].tolist())
        new = d[~d["decision_id"].isin(before)]
        dlog.log_decisions(conn, new)
        for at in pd.DatetimeIndex(new["decided_at"]).unique():
            dlog.mark_sent(conn, new.loc[new["decided_at"] == at, "decision_id"].tolist(), at)
    randomized = int(sum(sum(1 for v in dist.values() if v > 0) > 1 for dist in d["distribution"]))
    return DecisionImport(
        file=str(path),
        rows=len(d),
        randomized=randomized,
        already_logged=len(before),
        written=len(new),
        campaigns={str(k): int(v) for k, v in d["campaign"].value_counts().items()},
        offers={str(k): int(v) for k, v in d["offer"].value_counts().items()},
    )
