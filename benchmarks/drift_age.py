"""How aging alone moves drift, and what tenure matching leaves (why drift's reference is what it is).

`.venv/bin/python benchmarks/drift_age.py --seed 6 --tenure --gaps 7,56,86`: one 3,000-customer,
18-month simulated shop; the reference is its features (customers with an order) GAP days before the
current cutoff, the current is the same shop now, unchanged or with one of the stated shifts. Prints
one line per (gap, shift); the table in benchmarks/results/drift-age.md was written from those lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "drift")]

from drift_shop import (  # noqa: E402
    double_new_customers,
    drop_events,
    scale_order_values,
    thin_engagement,
)

from features.compute import compute_features, epoch_seconds, request_time_features  # noqa: E402
from pipelines.drift import Roles, analyse, hour_sensitive  # noqa: E402
from rebuy.config import DriftConfig  # noqa: E402
from rebuy.simulator import ShopSimulator, SimConfig  # noqa: E402


def features_at(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> pd.DataFrame:
    f = compute_features(tables, [cutoff])
    for name, values in request_time_features(f, epoch_seconds(f["cutoff"])).items():
        f[name] = values
    return f[f["orders_total"] >= 1].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--tenure", action="store_true", help="match the reference on tenure")
    ap.add_argument("--gaps", default="7,56,86")
    args = ap.parse_args()
    sim = ShopSimulator(SimConfig(customers=3000, months=18, seed=args.seed, events=True, start="2024-01-01"))
    tables = sim.run_history()
    now = sim.now.floor("D")
    shifted = {
        "none": tables,
        "values+20": scale_order_values(tables, 1.2),
        "eng-30": thin_engagement(tables, 0.7, args.seed),
        "new x2": double_new_customers(tables, now, args.seed),
        "carts off 7d": drop_events(tables, "cart", now - pd.Timedelta(days=7)),
    }
    current = {name: features_at(t, now) for name, t in shifted.items()}
    cols = tuple(
        c for c in current["none"].columns if c not in ("customer_id", "cutoff") and not c.endswith("_at")
    )
    roles = Roles(
        features=cols,
        timestamp="cutoff",
        hour_sensitive=hour_sensitive(cols),
        tenure="tenure_days" if args.tenure else None,
    )
    for gap in (int(g) for g in args.gaps.split(",")):
        ref = features_at(tables, now - pd.Timedelta(days=gap))
        for name, cur in current.items():
            r = analyse("x", ref, cur, roles, DriftConfig(), now)
            fl = r.table[r.table["level"] != "ok"]
            top = ", ".join(f"{c}={e:.2f}" for c, e in zip(fl["column"][:5], fl["effect"][:5], strict=True))
            print(
                f"seed {args.seed} tenure {args.tenure} gap {gap} {name}: {r.status.level}; flagged {len(fl)}: {top}"
            )


if __name__ == "__main__":
    main()
