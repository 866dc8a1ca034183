"""Import of a shop's past randomized campaign: who got which arm, what they looked like, what followed.

A campaign export is one row per customer: pre-send attributes (numeric and categorical), the arm
(an offer or message name, one of them the no-message control), optionally the logged propensity,
and one or more outcomes. The uplift learners in `training/` read it back with `read_campaign`, the
same way they read logged decisions. Stored as `<data_dir>/campaigns/<name>/campaign.parquet` plus
`roles.json`, written all at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rebuy.config import CampaignImportConfig, Config, DialectConfig
from rebuy.errors import DataError, combine
from rebuy.files import swap_in_dir
from rebuy.ingest import _FALSE, _TRUE, parse_numbers, read_raw

ARM = "arm"
PROPENSITY = "propensity"
CUSTOMER_ID = "customer_id"
FRAME_FILE = "campaign.parquet"
ROLES_FILE = "roles.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
YES_NO = "yes/no values (true/false, yes/no, t/f, y/n, 1/0)"


@dataclass(frozen=True)
class CampaignData:
    """A validated campaign: `frame` holds attributes, `arm`, `propensity` and outcome columns.

    `arm` and `propensity` are column names in `frame` (always present: when the export had no
    propensities they are the arm shares and `randomisation_assumed` is True). Numeric attributes
    and outcomes are float64; categorical attributes are text (None when missing).
    """

    frame: pd.DataFrame
    attributes: list[str]
    categorical: list[str]
    arm: str
    control: str
    propensity: str
    outcomes: list[str]
    arms: list[str]
    randomisation_assumed: bool
    name: str = ""
    source: str = ""

    @property
    def numeric(self) -> list[str]:
        return [a for a in self.attributes if a not in self.categorical]

    def roles(self) -> dict[str, object]:
        """The JSON-able description stored beside the Parquet file."""
        return {
            "name": self.name,
            "source": self.source,
            "attributes": self.attributes,
            "categorical": self.categorical,
            "arm": self.arm,
            "control": self.control,
            "propensity": self.propensity,
            "outcomes": self.outcomes,
            "arms": self.arms,
            "randomisation_assumed": self.randomisation_assumed,
            "rows": len(self.frame),
            "customer_id": CUSTOMER_ID if CUSTOMER_ID in self.frame.columns else None,
        }


def campaign_dir(cfg: Config, name: str) -> Path:
    return cfg.paths.data_dir / "campaigns" / name


def validate_campaign(
    cfg: Config, path: Path, roles: CampaignImportConfig | None = None, fmt: str | None = None, name: str = ""
) -> CampaignData:
    """Read and check a campaign export against its column roles; write nothing.

    `roles` defaults to `[import.campaign]`; its dialect to `[import.dialect]`.
    """
    roles = roles or cfg.import_.campaign
    dialect = roles.dialect or cfg.import_.dialect
    path = Path(path)
    fmt = fmt or ("parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv")
    raw = read_raw(path, fmt, dialect, None)
    return build_campaign(raw, roles, dialect, source=str(path), name=name, error_rows=cfg.import_.error_rows)


def import_campaign(
    cfg: Config, path: Path, name: str, roles: CampaignImportConfig | None = None, fmt: str | None = None
) -> CampaignData:
    """`validate_campaign`, then write `<data_dir>/campaigns/<name>/` atomically (Parquet + roles JSON)."""
    if not _NAME.match(name):
        raise DataError(
            f"campaign name {name!r} is not usable as a folder name",
            hint="use letters, digits, '_', '-' or '.', e.g. --name spring_2025",
        )
    data = validate_campaign(cfg, path, roles, fmt, name)
    write_campaign(data, campaign_dir(cfg, name))
    return data


def write_campaign(data: CampaignData, target: Path) -> Path:
    """Write to a temp folder beside `target`, then swap it in: never half a campaign on disk."""

    def write(tmp: Path) -> None:
        data.frame.to_parquet(tmp / FRAME_FILE, index=False)
        (tmp / ROLES_FILE).write_text(json.dumps(data.roles(), indent=2), encoding="utf-8")

    return swap_in_dir(target, write)


def read_campaign(path_or_name: Path | str, cfg: Config) -> CampaignData:
    """An imported campaign, by folder path or by the name it was imported under."""
    folder = Path(path_or_name)
    if not (folder / ROLES_FILE).is_file():
        folder = campaign_dir(cfg, str(path_or_name))
    if not (folder / ROLES_FILE).is_file():
        raise DataError(
            f"no imported campaign {str(path_or_name)!r}",
            file=str(folder / ROLES_FILE),
            hint="run `rebuy import-campaign FILE --name NAME` first",
        )
    roles = json.loads((folder / ROLES_FILE).read_text(encoding="utf-8"))
    frame = pd.read_parquet(folder / FRAME_FILE)
    for col in [*roles["categorical"], roles["arm"], *([CUSTOMER_ID] if roles.get("customer_id") else [])]:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return CampaignData(
        frame=frame,
        attributes=list(roles["attributes"]),
        categorical=list(roles["categorical"]),
        arm=roles["arm"],
        control=roles["control"],
        propensity=roles["propensity"],
        outcomes=list(roles["outcomes"]),
        arms=list(roles["arms"]),
        randomisation_assumed=bool(roles["randomisation_assumed"]),
        name=roles.get("name", ""),
        source=roles.get("source", ""),
    )


def build_campaign(
    raw: pd.DataFrame,
    roles: CampaignImportConfig,
    dialect: DialectConfig,
    *,
    source: str = "",
    name: str = "",
    error_rows: int = 5,
) -> CampaignData:
    """Pure: a raw export (cells as read) + column roles -> a checked CampaignData, or one DataError.

    Every problem found is reported in the one error (the first in full), so a user fixes them at once.
    """

    def err(problem: str, column: str | None, mask: pd.Series | None, hint: str) -> DataError:
        rows, numbers = None, None
        if mask is not None:
            idx = list(raw.index[mask.to_numpy()])[:error_rows]
            rows = raw.loc[idx].copy()
            rows.index = pd.Index([i + 1 for i in idx], name="row")
            numbers = [i + 1 for i in idx]
        return DataError(
            problem, file=source or None, column=column, rows=rows, row_numbers=numbers, hint=hint
        )

    cols = list(raw.columns)
    if roles.customer_id is None and CUSTOMER_ID in cols and CUSTOMER_ID not in (roles.attributes or []):
        # a column literally called customer_id is the id, not an attribute to learn from
        roles = roles.model_copy(update={"customer_id": CUSTOMER_ID})
    role_cols = [
        roles.arm,
        *roles.outcomes,
        *([roles.propensity] if roles.propensity else []),
        *([roles.customer_id] if roles.customer_id else []),
    ]
    attributes = roles.attributes if roles.attributes is not None else [c for c in cols if c not in role_cols]
    missing = [c for c in dict.fromkeys([*role_cols, *attributes]) if c not in cols]
    if missing:
        raise err(
            f"missing column(s) {missing}; the file has {cols}",
            missing[0],
            None,
            "name the columns' roles in [import.campaign] (arm, outcomes, propensity, attributes) or by flags",
        )
    if not roles.outcomes:
        raise err("no outcome column given", None, None, "set [import.campaign] outcomes or pass --outcome")
    clash = sorted(set(attributes) & set(role_cols))
    if clash or {ARM, PROPENSITY, CUSTOMER_ID} & (set(attributes) | set(roles.outcomes)):
        dual = clash or sorted({ARM, PROPENSITY, CUSTOMER_ID} & (set(attributes) | set(roles.outcomes)))
        raise err(
            f"column(s) {dual} have two roles, or use a reserved name",
            dual[0],
            None,
            f"rename them; {ARM!r}, {PROPENSITY!r} and {CUSTOMER_ID!r} are reserved for those roles",
        )

    problems: list[DataError] = []
    arm = raw[roles.arm]
    arm = arm.astype(str).where(arm.notna(), None) if not pd.api.types.is_object_dtype(arm) else arm
    if arm.isna().any():
        problems.append(
            err("missing arm", roles.arm, arm.isna(), "every customer must have the arm they got")
        )
    arm_text = arm.astype(object)
    if roles.arms is not None:
        if roles.control not in roles.arms:
            problems.append(
                err(
                    f"the control arm {roles.control!r} is not among the declared arms {roles.arms}",
                    roles.arm,
                    None,
                    "add it to [import.campaign] arms or fix control",
                )
            )
        unknown = arm_text.notna() & ~arm_text.isin(roles.arms)
        if unknown.any():
            problems.append(
                err(
                    f"unknown arm(s) {sorted(set(arm_text[unknown]))[:10]}; declared: {roles.arms}",
                    roles.arm,
                    unknown,
                    "fix the values or declare the arm in [import.campaign] arms",
                )
            )
    counts = arm_text.value_counts()
    if roles.control not in counts.index:
        problems.append(
            err(
                f"no row has the control arm {roles.control!r}; arms found: {sorted(counts.index)[:10]}",
                roles.arm,
                None,
                "name the no-message arm with [import.campaign] control or --control; an uplift needs a control group",
            )
        )
    small = counts[counts < roles.min_rows_per_arm]
    if len(small):
        problems.append(
            err(
                f"arm(s) with too few rows to learn from (minimum {roles.min_rows_per_arm}): "
                f"{ {str(k): int(v) for k, v in small.items()} }",
                roles.arm,
                None,
                "merge or drop those arms, or lower [import.campaign] min_rows_per_arm / --min-rows",
            )
        )
    if len(counts) < 2:
        problems.append(
            err(
                "the campaign has a single arm: nothing to compare",
                roles.arm,
                None,
                "export all arms, including the control group",
            )
        )

    frame = pd.DataFrame(index=raw.index)
    if roles.customer_id:
        ids = raw[roles.customer_id]
        ids = ids.astype(str) if pd.api.types.is_integer_dtype(ids) else ids.astype(object)
        dup = ids.duplicated(keep=False) & ids.notna()
        if dup.any():
            problems.append(
                err(
                    "the same customer appears more than once",
                    roles.customer_id,
                    dup,
                    "a campaign export has one row per customer",
                )
            )
        frame[CUSTOMER_ID] = ids.where(ids.notna(), None)

    numeric_of: dict[str, tuple[pd.Series, pd.Series]] = {
        c: parse_values(raw[c], dialect) for c in attributes
    }
    if roles.categorical is not None:
        unknown_cat = sorted(set(roles.categorical) - set(attributes))
        if unknown_cat:
            problems.append(
                err(
                    f"categorical column(s) {unknown_cat} are not attributes",
                    unknown_cat[0],
                    None,
                    "list only attribute columns as categorical",
                )
            )
        categorical = [c for c in attributes if c in roles.categorical]
    else:
        categorical = [c for c in attributes if numeric_of[c][1].any()]
    for c in attributes:
        if c in categorical:
            values = raw[c]
            text = values.astype(str) if not pd.api.types.is_object_dtype(values) else values
            frame[c] = text.where(values.notna(), None).astype(object)
            continue
        values, bad = numeric_of[c]
        if bad.any():
            problems.append(
                err(
                    "wrong type: a numeric attribute has non-numbers",
                    c,
                    bad,
                    "fix the values, or list the column under [import.campaign] categorical",
                )
            )
        frame[c] = values
    frame[ARM] = arm_text
    for c in roles.outcomes:
        values, bad = parse_values(raw[c], dialect)
        if bad.any():
            problems.append(
                err(
                    "non-numeric outcome",
                    c,
                    bad,
                    f"outcomes must be numbers (an amount for spend) or, in the whole column, {YES_NO}",
                )
            )
        elif values.isna().any():
            problems.append(
                err(
                    "missing outcome values",
                    c,
                    values.isna(),
                    "fill in the outcome (0 when nothing happened) or drop these rows",
                )
            )
        frame[c] = values
    if roles.propensity:
        p, bad = parse_numbers(raw[roles.propensity], dialect)
        outside = bad | p.isna() | (p <= 0) | (p > 1)
        if outside.any():
            problems.append(
                err(
                    "propensities outside (0, 1] (or missing / not numbers)",
                    roles.propensity,
                    outside,
                    "a propensity is the probability the customer got this arm: 0 < p <= 1",
                )
            )
        frame[PROPENSITY] = p
    if problems:
        raise combine(problems)
    assumed = roles.propensity is None
    if assumed:
        frame[PROPENSITY] = arm_text.map(counts / counts.sum()).astype(float)
    arms = [roles.control, *sorted(a for a in counts.index if a != roles.control)]
    return CampaignData(
        frame=frame.reset_index(drop=True),
        attributes=list(attributes),
        categorical=categorical,
        arm=ARM,
        control=roles.control,
        propensity=PROPENSITY,
        outcomes=list(roles.outcomes),
        arms=arms,
        randomisation_assumed=assumed,
        name=name,
        source=source,
    )


def parse_values(s: pd.Series, dialect: DialectConfig) -> tuple[pd.Series, pd.Series]:
    """A column -> float, and the mask of filled cells that are not values.

    A column whose every filled cell is a yes/no word (true/false, yes/no, t/f, y/n, 1/0, any case) is
    read as 1/0: that is how shops and the simulator export "converted" or a consent flag, and a
    boolean is a 0/1 outcome to every learner. Any other column is read as numbers in the export's
    locale; its error rows are the cells that are neither numbers nor yes/no words, or, when there are
    none, the words among the numbers.
    """
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float), pd.Series(False, index=s.index)
    if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
        text = s.astype("string[pyarrow]").str.strip().str.lower()
        filled = text.notna() & (text != "")
        yes, no = text.isin(_TRUE).fillna(False), text.isin(_FALSE).fillna(False)
        if filled.any() and bool((yes | no)[filled].all()):
            values = pd.Series(np.where(yes, 1.0, np.where(no, 0.0, np.nan)), index=s.index)
            return values, pd.Series(False, index=s.index)
        values, bad = parse_numbers(s, dialect)
        odd = bad & ~(yes | no)
        # yes, no, maybe: point at "maybe", not at every yes and no
        return values, odd if odd.any() else bad
    return parse_numbers(s, dialect)


def roles_with(cfg: Config, **flags: object) -> CampaignImportConfig:
    """`[import.campaign]` with command-line flags laid over it (None = not given).

    Dialect flags (delimiter, decimal, thousands, encoding) start from the campaign's own dialect, or
    from `[import.dialect]` when it has none.
    """
    base = cfg.import_.campaign
    dialect_keys = {"delimiter", "decimal", "thousands", "encoding"}
    dialect_flags = {k: v for k, v in flags.items() if k in dialect_keys and v is not None}
    role_flags = {k: v for k, v in flags.items() if k not in dialect_keys and v not in (None, [], ())}
    update: dict[str, object] = dict(role_flags)
    if dialect_flags:
        update["dialect"] = (base.dialect or cfg.import_.dialect).model_copy(update=dialect_flags)
    return CampaignImportConfig.model_validate({**base.model_dump(), **update})


def campaign_summary(data: CampaignData, written_to: Path | None = None) -> Group:
    """Per arm: rows, share, mean propensity and mean of each outcome; then the roles and notes."""
    f = data.frame
    table = Table(
        title=f"campaign {data.name!r} written to {written_to}" if written_to else "campaign validated"
    )
    for col in ["arm", "rows", "share", "propensity", *data.outcomes]:
        table.add_column(col, justify="left" if col == "arm" else "right")
    grouped = f.groupby(data.arm, sort=False)
    for arm in data.arms:
        g = grouped.get_group(arm)
        table.add_row(
            arm + (" (control)" if arm == data.control else ""),
            str(len(g)),
            f"{len(g) / len(f):.3f}",
            f"{g[data.propensity].mean():.3f}",
            *(f"{g[o].mean():.4g}" for o in data.outcomes),
        )
    lines = [
        Text(f"numeric attributes: {', '.join(data.numeric) or '-'}"),
        Text(f"categorical attributes: {', '.join(data.categorical) or '-'}"),
    ]
    if data.randomisation_assumed:
        lines.append(
            Text(
                "note: no propensity column: propensities are the arm shares (randomisation assumed)",
                style="yellow",
            )
        )
    return Group(table, *lines)
