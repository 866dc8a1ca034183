"""`ShopSimulator`: the history, the live shop, the oracle and historical campaigns on one step function."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from rebuy.contract import TABLES, empty
from rebuy.errors import DataError
from rebuy.files import write_parquet
from rebuy.simulator import dynamics as dyn
from rebuy.simulator import emit, exact
from rebuy.simulator.params import (
    CATEGORIES,
    LIVE_BLOCK_DAYS,
    SIM_CHANNELS,
    SIM_OFFERS,
    STREAM_CAMPAIGN,
    STREAM_DECISIONS,
    STREAM_DYNAMICS,
    STREAM_EVENTS,
    STREAM_TRUTH,
    TIMEZONES,
    SimConfig,
    Traits,
    day_rng,
    draw_live_traits,
    draw_traits,
    holiday_sale,
    live_signup_rate,
    purchase_rate,
    season_factor,
)

STREAM_ORDERS = 7
STREAM_SIGNUP_TIMES = 9  # times of day of the live shop's sign-ups (per block)
SNAPSHOT_EVERY = 28
MAX_ELEMENTS = 300_000  # customers x paths per oracle chunk (memory and cache friendliness)
Progress = Callable[[int, int], None]


class ShopSimulator:
    """A seeded shop with known ground truth. See the package docstring for the API."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.traits: Traits = draw_traits(self.config)
        n = self.config.customers
        self.ids = emit.customer_ids(n)
        self._pos = {c: i for i, c in enumerate(self.ids)}
        self.start = self.config.start_ts
        self._start_ns = int(self.start.value)
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, 99]))
        self._signup_tod = emit.local_times(rng.random(n), rng.random(n), np.zeros(n, np.int64))
        self._calendar(self.config.days + 800)
        self.state = dyn.State.initial(self.traits)
        self.day = 0  # days simulated so far; the next day to simulate
        self._order_seq = 0
        self._decisions: list[
            tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []  # day, cust, offer, ch
        self._snapshots: dict[int, dyn.State] = {}
        self._all_agents = dyn.Agents.gather(self.traits, np.arange(n))
        # the live shop keeps signing customers up (see `_grow_to`): sizes of the blocks added so far
        self.live_signup_rate = live_signup_rate(self.traits.signup_day, self.config.days)
        self._live_blocks: list[int] = []
        # views outside purchase intent per customer, as written (hidden: the browsing trace's measure)
        self._idle_views = np.zeros(n, np.int64)

    # --- the population: the history's customers, then those who sign up in the live shop -------------

    def _grow_to(self, day: int) -> None:
        """Add the live sign-up blocks up to the one holding `day` (nothing within the history).

        New customers join the end of every per-customer array, so existing indexes (decisions, replays)
        stay valid; each block is a pure function of (config, block), so the population on any day does
        not depend on how the days were stepped, and a saved simulator regrows it exactly.
        """
        while day >= self.config.days + len(self._live_blocks) * LIVE_BLOCK_DAYS:
            more = draw_live_traits(self.config, len(self._live_blocks), self.live_signup_rate)
            k = len(more.signup_day)
            n0 = len(self.ids)
            rng = day_rng(self.config.seed, STREAM_SIGNUP_TIMES, len(self._live_blocks))
            self.traits = self.traits.concat(more)
            self.ids = np.concatenate([self.ids, emit.customer_ids(k, first=n0)])
            self._pos.update({c: n0 + i for i, c in enumerate(self.ids[n0:])})
            self._signup_tod = np.concatenate(
                [self._signup_tod, emit.local_times(rng.random(k), rng.random(k), np.zeros(k, np.int64))]
            )
            self._all_agents = dyn.Agents.gather(self.traits, np.arange(len(self.ids)))
            self._idle_views = np.concatenate([self._idle_views, np.zeros(k, np.int64)])
            self._live_blocks.append(k)
            self._fit(self.state)

    def _fit(self, st: dyn.State) -> dyn.State:
        """Extend a state taken before the latest sign-ups (snapshot, saved state) with them, not signed up yet."""
        m, n = len(st.s), len(self.ids)
        if m < n:
            newcomers = dyn.State.initial(self.traits.slice(m, n))
            for name, extra in newcomers.arrays().items():
                setattr(st, name, np.concatenate([getattr(st, name), extra]))
        return st

    def _draws(self, day: int) -> np.ndarray:
        """The day's uniforms for every customer: the history's customers from the day's stream, each live
        block from its own (so sign-ups never shift anyone else's numbers); blocks not open yet get ones
        (they are not signed up, nothing reads their draws)."""
        seed = self.config.seed
        parts = [dyn.draws(day_rng(seed, STREAM_DYNAMICS, day), self.config.customers)]
        for b, k in enumerate(self._live_blocks):
            if self.config.days + b * LIVE_BLOCK_DAYS <= day:
                parts.append(dyn.draws(day_rng(seed, STREAM_DYNAMICS, day, 1 + b), k))
            else:
                parts.append(np.ones((dyn.N_DRAWS, k), np.float32))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    # --- calendar -------------------------------------------------------------------------------------

    def _calendar(self, ndays: int) -> None:
        self._season = season_factor(self.start, 0, ndays)
        self._sale = holiday_sale(self.start, 0, ndays)
        self._doy = pd.date_range(self.start, periods=ndays, freq="D").dayofyear.to_numpy()
        self._offsets = emit.tz_offsets_ns(self.start, ndays)

    def _ensure_calendar(self, day: int) -> None:
        if day >= len(self._season):
            self._calendar(day + 800)

    @property
    def now(self) -> pd.Timestamp:
        """End of the simulated history (midnight UTC after the last simulated day)."""
        return self.start + pd.Timedelta(days=self.day)

    def day_of(self, at: pd.Timestamp | str) -> int:
        """Day index whose start is the latest midnight UTC at or before `at`."""
        ts = pd.Timestamp(at)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(np.floor((ts - self.start) / pd.Timedelta(days=1)))

    # --- the day ---------------------------------------------------------------------------------------

    def _advance(self, st: dyn.State, day: int, emit_rows: bool) -> emit.DayRows | None:
        """One day of the full shop: logged decisions of the day, then the dynamics, then (maybe) rows."""
        self._ensure_calendar(day)
        self._grow_to(day)
        self._fit(st)
        n = len(self.ids)
        sent: list[tuple[np.ndarray, np.ndarray]] = []  # delivered messages (customer, channel) of the day
        for dday, cust, offer, ch in self._decisions:
            sel = dday == day
            if sel.any():
                u = day_rng(self.config.seed, STREAM_DECISIONS, day).random(n)
                ok = dyn.apply_offers(
                    self.config, st, self._all_agents, cust[sel], offer[sel], ch[sel], day, u[cust[sel]]
                )
                sent.append((cust[sel][ok], ch[sel][ok]))
        n_before = st.n_orders.copy()
        u = self._draws(day)
        out = dyn.step(
            st,
            self._all_agents,
            day,
            float(self._season[day]),
            bool(self._sale[day]),
            int(self._doy[day]),
            u,
            self.config.offers.shipping_cost,
            self.config.newsletter_day(day),
        )
        if not emit_rows:
            return None
        rows = emit.emit_day(
            self.traits,
            st,
            out,
            n_before,
            day,
            self._start_ns + day * emit.DAY_NS,
            self._offsets[:, day],
            day_rng(self.config.seed, STREAM_ORDERS, day),
            day_rng(self.config.seed, STREAM_EVENTS, day) if self.config.events else None,
            self._signup_tod,
            ambient_email=self.config.newsletter_every_days == 0,
        )
        np.add.at(self._idle_views, rows.idle_views, 1)
        if self.config.events and len(rows.messages["cust"]):
            rows.events = emit.newsletter_events(
                rows.events,
                self.traits,
                st,
                rows.messages["cust"],
                rows.messages["t"] - (self._start_ns + day * emit.DAY_NS),
                day,
                self._start_ns + day * emit.DAY_NS,
                day_rng(self.config.seed, STREAM_EVENTS, day, 2),
            )
        if sent and self.config.events:
            rows.events = emit.message_events(
                rows.events,
                st,
                np.concatenate([c for c, _ in sent]),
                np.concatenate([h for _, h in sent]),
                self._start_ns + day * emit.DAY_NS,
                self._offsets[self.traits.tz, day],
                day_rng(self.config.seed, STREAM_EVENTS, day, 1),
            )
        return rows

    def run_history(self, progress: Progress | None = None) -> dict[str, pd.DataFrame]:
        """Simulate the whole history from day 0 and return the four canonical tables."""
        if self.day != 0:
            raise RuntimeError("run_history() runs once, on a fresh simulator; use step() to go on")
        st = self.state
        rows: list[emit.DayRows] = []
        total = self.config.days
        for day in range(total):
            if day % SNAPSHOT_EVERY == 0:
                self._snapshots[day] = st.copy()
            r = self._advance(st, day, emit_rows=True)
            assert r is not None
            rows.append(r)
            self.day = day + 1
            if progress is not None:
                progress(day + 1, total)
        return self._tables(rows, customers_upto=self.day)

    def _tables(
        self, rows: list[emit.DayRows], customers_upto: int, new_customers_from: int = 0
    ) -> dict[str, pd.DataFrame]:
        orders = emit.orders_table([r.orders for r in rows], self.ids, self._order_seq)
        self._order_seq += len(orders)
        customers = emit.customers_table(
            self.traits, self.ids, self._start_ns, customers_upto, self._signup_tod
        )
        customers = customers[customers["signup_at"] >= self.start + pd.Timedelta(days=new_customers_from)]
        out = {
            "customers": customers.reset_index(drop=True),
            "orders": orders,
            "events": emit.events_table([r.events for r in rows], self.ids)
            if self.config.events
            else empty("events"),
            "consent_updates": emit.consents_table([r.consents for r in rows], self.ids),
            "messages": emit.messages_table([r.messages for r in rows], self.ids, self.start),
        }
        return {t: out[t] for t in TABLES}

    # --- the live shop ------------------------------------------------------------------------------

    def step(self, days: int = 1, decisions: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
        """Advance the live shop by `days`, delivering `decisions` (customer_id, decided_at, offer, channel).

        A decision takes effect on the day of its `decided_at` (decisions dated before the current day
        act today: the past is not rewritten). Returns only the new rows of each table, including the
        customers who signed up on these days (a live shop keeps acquiring customers at the history's
        recent rate, `live_signup_rate` a day) with their orders and events; the oracle covers them too.
        """
        if self.day == 0:
            raise RuntimeError("run the history first (run_history())")
        first_day = self.day
        if decisions is not None and len(decisions):
            self._log_decisions(decisions, first_day, first_day + days)
        rows = []
        for _ in range(days):
            if self.day % SNAPSHOT_EVERY == 0:
                self._snapshots[self.day] = self.state.copy()
            r = self._advance(self.state, self.day, emit_rows=True)
            assert r is not None
            rows.append(r)
            self.day += 1
        return self._tables(rows, customers_upto=self.day, new_customers_from=first_day)

    def _log_decisions(self, decisions: pd.DataFrame, first_day: int, end_day: int) -> None:
        missing = [c for c in ("customer_id", "decided_at", "offer", "channel") if c not in decisions.columns]
        if missing:
            raise DataError(
                f"decisions lack columns {missing}",
                column=missing[0],
                hint="pass customer_id, decided_at, offer, channel",
            )
        cust = self._index(decisions["customer_id"])
        decided = pd.to_datetime(decisions["decided_at"], utc=True)
        days = np.floor(np.asarray((decided - self.start) / pd.Timedelta(days=1), dtype=float)).astype(
            np.int64
        )
        late = days >= end_day
        if late.any():
            raise DataError(
                f"{int(late.sum())} decisions are dated after the days being simulated",
                column="decided_at",
                rows=decisions[late].head(5),
                hint=f"step far enough to reach them (the window ends at {self.start + pd.Timedelta(days=end_day)})",
            )
        days = np.maximum(days, first_day).astype(np.int32)
        offer = dyn.offer_index(decisions["offer"].to_numpy())
        ch = dyn.channel_index(decisions["channel"].to_numpy())
        self._decisions.append((days, cust, offer, ch))

    def _index(self, customer_ids: Iterable[str]) -> np.ndarray:
        ids = list(customer_ids)
        try:
            return np.array([self._pos[c] for c in ids], dtype=np.int64)
        except KeyError as exc:
            raise DataError(
                f"unknown customer_id {exc.args[0]!r}",
                column="customer_id",
                hint="only customers of this simulated shop can be asked about",
            ) from exc

    # --- replay: the full hidden state at any past day ------------------------------------------------

    def state_at(self, day: int) -> dyn.State:
        """The hidden state at the start of `day` (replayed from the nearest snapshot)."""
        if day > self.day:
            raise ValueError(f"day {day} is after the simulated history (now is day {self.day})")
        if day == self.day:
            return self._fit(self.state.copy())
        base = max((d for d in self._snapshots if d <= day), default=None)
        st = self._snapshots[base].copy() if base is not None else dyn.State.initial(self.traits)
        for d in range(base or 0, day):
            self._advance(st, d, emit_rows=False)
        return self._fit(st)

    def _replay_days(self, days: Sequence[int]) -> Iterable[tuple[int, dyn.State]]:
        """States at each of the sorted `days`, in one pass."""
        days = sorted(set(days))
        if not days:
            return
        st = self.state_at(days[0])
        cur = days[0]
        for d in days:
            for dd in range(cur, d):
                self._advance(st, dd, emit_rows=False)
            cur = d
            yield d, st

    # --- the oracle ------------------------------------------------------------------------------------

    def truth(
        self,
        customer_ids: Iterable[str],
        at: pd.Timestamp | str,
        horizon_days: int = 30,
        offers: Sequence[str] = SIM_OFFERS,
        spend_days: int | None = 180,
        channel: str | None = None,
        paths: int | None = None,
    ) -> pd.DataFrame:
        """True probabilities and values from the full hidden state at `at` (day resolution, midnight UTC).

        Columns: alive; p_order (no action) and p_order__<offer>: P(an order within horizon_days);
        expected_spend (order value within spend_days, no action); expected_days_to_next_order (no
        action, capped at spend_days); expected_margin__<offer>: margin on the incremental order value
        within horizon_days against no action, net of the offer's cost (fixed cost when delivered,
        redemption share of the order value and free shipping within the attribution window).
        Offers go on `channel`, or else on the offer's configured channel when consented, else on the
        first consented one (as `randomized_campaign` sends); without consent there is no message, no
        effect and no cost. Probabilities and days come from the exact intent chain (no sampling
        noise); order values from `paths` Monte Carlo paths per customer, common to all offers.
        """
        cids = list(customer_ids)
        idx = self._index(cids)
        day = self.day_of(at)
        st = self.state_at(day)
        res = self._oracle(st, idx, day, horizon_days, offers, spend_days, channel, paths)
        res.index = pd.Index(cids, name="customer_id")
        return res

    def truth_at(
        self,
        pairs: pd.DataFrame,
        horizon_days: int = 30,
        offers: Sequence[str] = ("none",),
        spend_days: int | None = None,
        channel: str | None = None,
        paths: int | None = None,
        progress: Progress | None = None,
    ) -> pd.DataFrame:
        """The oracle for many (customer_id, cutoff) pairs in one replay pass; index and order of `pairs` kept."""
        idx = self._index(pairs["customer_id"])
        days = np.array([self.day_of(t) for t in pd.to_datetime(pairs["cutoff"], utc=True)], dtype=np.int64)
        parts: list[pd.DataFrame] = []
        uniq = sorted(set(days.tolist()))
        for k, (d, st) in enumerate(self._replay_days(uniq)):
            rows = np.flatnonzero(days == d)
            res = self._oracle(st, idx[rows], d, horizon_days, offers, spend_days, channel, paths)
            res.index = pairs.index[rows]
            parts.append(res)
            if progress is not None:
                progress(k + 1, len(uniq))
        out = pd.concat(parts).loc[pairs.index] if parts else pd.DataFrame(index=pairs.index)
        out.insert(0, "cutoff", pairs["cutoff"].to_numpy())
        out.insert(0, "customer_id", pairs["customer_id"].to_numpy())
        return out

    def _oracle(
        self,
        st: dyn.State,
        idx: np.ndarray,
        day: int,
        horizon: int,
        offers: Sequence[str],
        spend_days: int | None,
        channel: str | None,
        paths: int | None,
    ) -> pd.DataFrame:
        cfg = self.config
        k = int(paths or cfg.truth_paths)
        arms = ["none", *[o for o in offers if o != "none"]]
        codes = dyn.offer_index(np.array(arms, dtype=object))
        attr = cfg.offers.attribution_days
        t_none = max(horizon, spend_days or 0)
        t_offer = max(horizon, attr)
        chunk = max(1, MAX_ELEMENTS // k)
        acc: dict[str, list[np.ndarray]] = {}
        for c0 in range(0, len(idx), chunk):
            ci = idx[c0 : c0 + chunk]
            res = {}
            if spend_days or len(arms) > 1:  # order values need sampled paths
                res = self._forward(
                    st, ci, day, k, arms, codes, channel, t_none, t_offer, horizon, spend_days, attr
                )
            res.update(self._exact(st, ci, day, arms, codes, channel, horizon, spend_days))
            for key, v in res.items():
                acc.setdefault(key, []).append(v)
        r = {key: np.concatenate(v) if v else np.zeros(0) for key, v in acc.items()}
        out = pd.DataFrame({"alive": st.alive[idx] & st.active[idx]})
        out["p_order"] = r.get("p__none", np.zeros(len(idx)))
        for a in arms[1:]:
            out[f"p_order__{a}"] = r[f"p__{a}"]
        if "none" in offers:
            out["p_order__none"] = out["p_order"]
        if spend_days:
            out["expected_spend"] = r["spend_long"]
            out["expected_days_to_next_order"] = r["days_next"]
        m, cat = cfg.offers.margin, cfg.offers.catalogue
        for a in arms[1:]:
            oc = cat.get(a)
            cost = oc.cost if oc else 0.0
            share = oc.redemption_share if oc else 0.0
            ship = cfg.offers.shipping_cost if a == "free_shipping" else 0.0
            incr = m * (r[f"spend_h__{a}"] - r["spend_h__none"])
            charge = cost + share * r[f"spend_attr__{a}"] + ship * r[f"orders_attr__{a}"]
            out[f"expected_margin__{a}"] = np.where(r[f"delivered__{a}"], incr - charge, 0.0)
        if "none" in offers:
            out["expected_margin__none"] = 0.0
        return out

    def _exact(
        self,
        st0: dyn.State,
        ci: np.ndarray,
        day: int,
        arms: list[str],
        codes: np.ndarray,
        channel: str | None,
        horizon: int,
        spend_days: int | None,
    ) -> dict[str, np.ndarray]:
        """Order probabilities (and expected days to the next order) per arm from the exact intent chain."""
        base = st0.take(ci)
        ag = dyn.Agents.gather(self.traits, ci)
        c = len(ci)
        days = max(horizon, spend_days or 0)
        self._ensure_calendar(day + days)
        res: dict[str, np.ndarray] = {}
        for a, code in zip(arms, codes, strict=True):
            s = base.copy()
            alive_prob = s.alive.astype(float)
            if a != "none":
                ch = dyn.channel_index(np.full(c, channel or self._offer_channel(a), dtype=object))
                if channel is None:
                    ch = dyn.choose_channel(s.consent, ch)
                ok = dyn.apply_offers(
                    self.config, s, ag, np.arange(c), np.full(c, code, np.int8), ch, day, np.ones(c)
                )  # u = 1: no sampled revival; its probability instead
                res[f"delivered__{a}"] = ok
                if a == "wake_up_gift":
                    alive_prob = np.where(ok & ~base.alive, ag.revive, alive_prob)
            surv = exact.survival(
                s, ag, day, days if a == "none" else horizon, self._season, self._doy, alive_prob
            )
            res[f"p__{a}"] = 1.0 - surv[:, horizon]
            if a == "none" and spend_days:
                res["days_next"] = surv[:, :spend_days].sum(axis=1)
        return res

    def _forward(
        self,
        st0: dyn.State,
        ci: np.ndarray,
        day: int,
        k: int,
        arms: list[str],
        codes: np.ndarray,
        channel: str | None,
        t_none: int,
        t_offer: int,
        horizon: int,
        spend_days: int | None,
        attr: int,
    ) -> dict[str, np.ndarray]:
        """Monte Carlo forward of customers `ci` (k paths each), every arm on common random numbers."""
        cfg = self.config
        c = len(ci)
        rep = np.repeat(np.arange(c), k)
        base = st0.take(ci[rep])
        ag = dyn.Agents.gather(self.traits, ci[rep])
        m = len(rep)
        states: dict[str, dyn.State] = {}
        delivered: dict[str, np.ndarray] = {}
        u_dec = day_rng(cfg.seed, STREAM_TRUTH, day, 1).random(m)
        for a, code in zip(arms, codes, strict=True):
            s = base.copy()
            if a != "none":
                ch = dyn.channel_index(np.full(m, channel or self._offer_channel(a), dtype=object))
                if channel is None:
                    ch = dyn.choose_channel(s.consent, ch)
                ok = dyn.apply_offers(cfg, s, ag, np.arange(m), np.full(m, code, np.int8), ch, day, u_dec)
                delivered[a] = np.asarray(ok.reshape(c, k).any(axis=1))
            states[a] = s
        first = {a: np.full(m, -1, np.int32) for a in arms}
        spend_h = {a: np.zeros(m) for a in arms}
        spend_attr = {a: np.zeros(m) for a in arms}
        orders_attr = {a: np.zeros(m) for a in arms}
        spend_long = np.zeros(m)
        for t in range(max(t_none, t_offer)):
            d = day + t
            self._ensure_calendar(d)
            u = dyn.draws(day_rng(cfg.seed, STREAM_TRUTH, d, 2 + c * 7919 + int(ci[0])), m)
            for a in arms:
                if t >= (t_none if a == "none" else t_offer):
                    continue
                out = dyn.step(
                    states[a],
                    ag,
                    d,
                    float(self._season[d]),
                    bool(self._sale[d]),
                    int(self._doy[d]),
                    u,
                    cfg.offers.shipping_cost,
                    cfg.newsletter_day(d),
                )
                o = out.ordered
                first[a] = np.where(o & (first[a] < 0), t, first[a])
                if t < horizon:
                    spend_h[a] += out.amount
                if t < attr:
                    spend_attr[a] += out.amount
                    orders_attr[a] += o
                if a == "none" and spend_days and t < spend_days:
                    spend_long += out.amount

        def mean(x: np.ndarray) -> np.ndarray:
            return x.reshape(c, k).mean(axis=1)

        res: dict[str, np.ndarray] = {}
        for a in arms:
            res[f"p__{a}"] = mean(((first[a] >= 0) & (first[a] < horizon)).astype(float))
            res[f"spend_h__{a}"] = mean(spend_h[a])
            res[f"spend_attr__{a}"] = mean(spend_attr[a])
            res[f"orders_attr__{a}"] = mean(orders_attr[a])
            if a != "none":
                res[f"delivered__{a}"] = delivered[a]
        if spend_days:
            res["spend_long"] = mean(spend_long)
            res["days_next"] = mean(np.where(first["none"] >= 0, first["none"] + 1, spend_days).astype(float))
        return res

    def _offer_channel(self, offer: str) -> str:
        """The channel an offer goes on by default (config), email when the config names none."""
        oc = self.config.offers.catalogue.get(offer)
        return oc.channel if oc is not None and oc.channel in SIM_CHANNELS else "email"

    # --- historical randomized campaign ---------------------------------------------------------------

    def randomized_campaign(
        self,
        at: pd.Timestamp | str,
        offers: Sequence[str] = SIM_OFFERS,
        n_customers: int | None = None,
        probs: Sequence[float] | None = None,
        seed: int = 0,
        campaign: str = "historical_campaign",
        min_orders: int = 1,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A past campaign with offers assigned at random at `at`, as a branch of the history.

        The campaign does not rewrite the simulated tables: its outcomes come from a separate forward
        run from the true state at `at`, so `truth(ids, at, ...)` is the exact truth of the export.
        Returns (decisions in the decision-log shape, flat export: one row per customer with
        attributes at send time, arm, propensity, and outcomes over the attribution window).
        """
        cfg = self.config
        day = self.day_of(at)
        st = self.state_at(day)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_CAMPAIGN, seed]))
        eligible = np.flatnonzero(st.active & (st.n_orders >= min_orders))
        if n_customers is not None and n_customers < len(eligible):
            eligible = np.sort(rng.choice(eligible, n_customers, replace=False))
        arms = list(offers)
        p = np.full(len(arms), 1.0 / len(arms)) if probs is None else np.asarray(probs, float)
        if len(p) != len(arms) or abs(p.sum() - 1) > 1e-9 or (p < 0).any():
            raise ValueError(f"probs must be {len(arms)} non-negative numbers summing to 1, got {list(p)}")
        arm = rng.choice(len(arms), len(eligible), p=p)
        offer_names = np.array(arms, dtype=object)[arm]
        # channel: the offer's configured channel when consented, else the first consented one
        chans = np.array(SIM_CHANNELS, dtype=object)
        want = dyn.channel_index(np.array([self._offer_channel(o) for o in offer_names], dtype=object))
        ci = dyn.choose_channel(st.consent[eligible], want)
        ch_name = np.where((offer_names == "none") | (ci < 0), "none", chans[np.clip(ci, 0, 2)]).astype(
            object
        )
        # the branch: deliver on `day`, run the attribution window forward on the campaign's own numbers
        branch = st.take(eligible)
        ag = dyn.Agents.gather(self.traits, eligible)
        m = len(eligible)
        attr = cfg.offers.attribution_days
        u_dec = day_rng(cfg.seed, STREAM_CAMPAIGN, day, 1 + seed).random(m)
        dyn.apply_offers(
            cfg,
            branch,
            ag,
            np.arange(m),
            dyn.offer_index(offer_names),
            dyn.channel_index(ch_name),
            day,
            u_dec,
        )
        converted = np.zeros(m, bool)
        spend = np.zeros(m)
        n_orders = np.zeros(m, np.int64)
        visited = np.zeros(m, bool)
        for t in range(attr):
            d = day + t
            self._ensure_calendar(d)
            u = dyn.draws(day_rng(cfg.seed, STREAM_CAMPAIGN, d, 1000 + seed), m)
            out = dyn.step(
                branch,
                ag,
                d,
                float(self._season[d]),
                bool(self._sale[d]),
                int(self._doy[d]),
                u,
                cfg.offers.shipping_cost,
                cfg.newsletter_day(d),
            )
            converted |= out.ordered
            spend += out.amount
            n_orders += out.ordered
            visited |= out.in_intent | out.ordered | (u[6] < self.traits.browse[eligible] * branch.alive)
        decided_at = self.start + pd.Timedelta(days=day)  # the oracle's day resolution: sent at its start
        ids = self.ids[eligible]
        dist = {a: float(q) for a, q in zip(arms, p, strict=True)}
        decisions = pd.DataFrame(
            {
                "decision_id": [f"{campaign}:{c}" for c in ids],
                "customer_id": ids,
                "decided_at": pd.Series([decided_at] * m, dtype="datetime64[ns, UTC]"),
                "trigger": "campaign",
                "campaign": campaign,
                "episode": f"{campaign}:{decided_at.date().isoformat()}",
                "offer": offer_names,
                "channel": ch_name,
                "group": np.where(offer_names == "none", "control", "treatment").astype(object),
                "propensity": p[arm],
                "distribution": [dist] * m,
                "model_versions": [{}] * m,
                "scores": [{}] * m,
                "reasons": [[] for _ in range(m)],
            }
        )
        export = self._attributes(st, eligible, day)
        export.insert(1, "sent_at", decisions["decided_at"])
        export.insert(2, "campaign", campaign)
        export.insert(3, "arm", offer_names)
        export.insert(4, "channel", ch_name)
        export.insert(5, "propensity", p[arm])
        export["converted"] = converted
        export["orders"] = n_orders
        export["spend"] = np.round(spend, 2)
        export["visited"] = visited
        return decisions, export

    def _attributes(self, st: dyn.State, idx: np.ndarray, day: int) -> pd.DataFrame:
        """What a shop knows about customers at send time (all observable from the tables)."""
        zones = np.array([t[0] for t in TIMEZONES], dtype=object)
        regions = np.array([t[1] for t in TIMEZONES], dtype=object)
        cats = np.array([*CATEGORIES, None], dtype=object)
        n_orders = st.n_orders[idx]
        tenure = day - self.traits.signup_day[idx]
        bday = self.traits.birthday[idx]
        age = np.where(
            np.isnat(bday),
            np.nan,
            (np.datetime64(self.start.date().isoformat(), "D") + day - bday)
            .astype("timedelta64[D]")
            .astype(float)
            / 365.25,
        )
        return pd.DataFrame(
            {
                "customer_id": self.ids[idx],
                "recency_days": np.where(n_orders > 0, st.s[idx], np.nan),
                "frequency": n_orders,
                "monetary": np.round(st.spend[idx], 2),
                "avg_order_value": np.where(n_orders > 0, st.spend[idx] / np.maximum(n_orders, 1), np.nan),
                "tenure_days": tenure,
                "discount_share": np.where(n_orders > 0, st.n_disc[idx] / np.maximum(n_orders, 1), np.nan),
                "last_category": cats[np.where(st.last_cat[idx] < 0, len(CATEGORIES), st.last_cat[idx])],
                "age": np.floor(age),
                "region": regions[self.traits.tz[idx]],
                "timezone": zones[self.traits.tz[idx]],
                "consent_email": st.consent[idx, 0],
                "consent_sms": st.consent[idx, 1],
                "consent_push": st.consent[idx, 2],
            }
        )

    # --- hidden truth for inspection, save / load ---------------------------------------------------

    def customer_truth(self) -> pd.DataFrame:
        """Hidden traits and current hidden state per signed-up customer (for analysis; never a model input)."""
        t, st = self.traits, self._fit(self.state)
        out = pd.DataFrame(
            {
                "customer_id": self.ids,
                "cycle_scale_days": t.scale,
                "cycle_shape": t.shape,
                "p_drop": t.p_drop,
                "conversion": t.conv,
                "typical_value": t.value,
                "price_sensitivity": t.price_sens,
                "message_averse": t.averse,
                "revive_chance": t.revive,
                "alive": st.alive & st.active,
                "orders": st.n_orders,
                "days_since_last_order": st.s,
                "purchase_rate": purchase_rate(t.scale, t.shape, t.conv),  # orders a year while alive
                "views_outside_intent": self._idle_views,  # aimless browsing and window shopping, as written
            }
        )
        return out[t.signup_day < self.day].reset_index(drop=True)

    def save(self, directory: str | Path) -> Path:
        """config.json + arrays in .npz (traits, state, snapshots, decision log); no pickle."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for k, v in self.state.arrays().items():
            arrays[f"state__{k}"] = v
        arrays["idle_views"] = self._idle_views
        for day, snap in self._snapshots.items():
            for k, v in snap.arrays().items():
                arrays[f"snap{day}__{k}"] = v
        for i, (a, b, c, e) in enumerate(self._decisions):
            (
                arrays[f"dec{i}__day"],
                arrays[f"dec{i}__cust"],
                arrays[f"dec{i}__offer"],
                arrays[f"dec{i}__ch"],
            ) = a, b, c, e
        np.savez_compressed(d / "state.npz", **arrays)  # type: ignore[arg-type]
        np.savez_compressed(d / "traits.npz", **self.traits.as_arrays())  # type: ignore[arg-type]
        meta = {
            "config": self.config.to_json(),
            "day": self.day,
            "order_seq": self._order_seq,
            "n_decision_batches": len(self._decisions),
            "snapshots": sorted(self._snapshots),
            "live_blocks": len(self._live_blocks),
            "format": 2,
        }
        (d / "simulator.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> ShopSimulator:
        d = Path(directory)
        meta = json.loads((d / "simulator.json").read_text(encoding="utf-8"))
        sim = cls(SimConfig.from_json(meta["config"]))
        # regrow the live shop's sign-ups (pure functions of the config) before the arrays are matched
        if meta.get("live_blocks", 0):
            sim._grow_to(sim.config.days + (int(meta["live_blocks"]) - 1) * LIVE_BLOCK_DAYS)
        with np.load(d / "state.npz", allow_pickle=False) as z:
            names = [f.name for f in fields(dyn.State)]
            sim.state = dyn.State(**{k: z[f"state__{k}"] for k in names})
            if "idle_views" in z.files:
                sim._idle_views = z["idle_views"]
            sim._snapshots = {
                int(day): dyn.State(**{k: z[f"snap{day}__{k}"] for k in names}) for day in meta["snapshots"]
            }
            sim._decisions = [
                (z[f"dec{i}__day"], z[f"dec{i}__cust"], z[f"dec{i}__offer"], z[f"dec{i}__ch"])
                for i in range(meta["n_decision_batches"])
            ]
        sim.day = int(meta["day"])
        sim._order_seq = int(meta["order_seq"])
        if len(sim.state.s) != len(sim.ids):
            raise DataError(
                f"the saved state holds {len(sim.state.s)} customers, its config and sign-up blocks give "
                f"{len(sim.ids)}",
                file=str(d / "state.npz"),
                hint="the folder mixes files of different simulators; simulate again (`rebuy simulate`)",
            )
        return sim


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> Path:
    """One Parquet file per table (`<out_dir>/<table>.parquet`), written to a temp name then renamed."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_parquet(df, d / f"{name}.parquet")
    return d
