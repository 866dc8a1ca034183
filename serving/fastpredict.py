"""One-row LightGBM predictions without `Booster.predict`'s per-call set-up, for the serving hot path.

`Booster.predict` on one numpy row costs ~40-140 us, almost all of it set-up: it deep-copies its
parameters, builds an `_InnerPredictor`, asks the C side for the output size, and the C side builds a
new `Predictor` on every call. LightGBM's C API has a single-row path whose set-up is done once
(`LGBM_BoosterPredictForMatSingleRowFastInit`); after that a row costs a few microseconds plus the
trees. `FastBooster` wraps a booster with one such config per prediction type (normal, raw score,
contributions) and answers `predict` through it for a single float64 row, falling back to the booster
for anything else (batches, other options) — so it is a drop-in replacement for `lgb.Booster`.

The single-row path runs the same tree code as `LGBM_BoosterPredictForMat` (same objective
transform, same iteration range), so results are bit-identical; `tests/serving/test_fastpredict.py`
checks that on every prediction type. `accelerate` swaps every booster inside a model bundle (a
dataclass, possibly nested, with boosters as fields or in dicts) for a FastBooster, so the models'
own `predict` code — calibration, uplift arithmetic — runs unchanged on top of it.

Batches (`rebuy score`'s chunks) take two more shortcuts. From `table_min_rows` rows on, a booster whose
trees tabulate well answers from look-up tables (serving.treetables: the same numbers up to summation
order, ~1e-15); the first such batch is also predicted by LightGBM, and the tables are kept only if they
agree (1e-9) and were faster. And inside `shared_predictions()` a booster asked twice for the same input
array answers from memory: the offer model's margin part predicts the conversion learners' levels that
its conversion part has just predicted (two copies of one learner; `accelerate(..., shared=)` makes them
one FastBooster).
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

# The private LightGBM members used here (`lightgbm.basic._LIB`, `_safe_call`, `Booster._handle`) were checked
# on this version; tests/test_architecture.py fails on any other until they are re-checked.
PINNED_VERSIONS = {"lightgbm": "4.7.0"}
_DTYPE_FLOAT64 = 1
_NORMAL, _RAW, _CONTRIB = 0, 1, 3
_FAST_KWARGS = frozenset({"num_threads"})
# int LGBM_BoosterPredictForMatSingleRowFast(FastConfigHandle, const void* data, int64_t* out_len, double* out)
# batches at least this large may use serving.treetables (the service's batches stay far below it)
TABLE_MIN_ROWS = 5_000
# (booster id, input id, kind) -> (input, output) while a shared_predictions() block runs in this context
_SHARED: ContextVar[dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] | None] = ContextVar(
    "rebuy_shared_predictions", default=None
)
_UNTRIED = object()


@contextmanager
def shared_predictions() -> Iterator[None]:
    """Within the block, a FastBooster asked again for the same (unchanged) input array returns its first
    answer. The caller promises not to modify the arrays it passes while the block runs."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


_FAST_PROTO = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p
)


class FastBooster:
    """An `lgb.Booster` stand-in whose one-row `predict` uses prebuilt single-row predictors.

    Thread-safe: the single-row predictor keeps per-booster scratch buffers on the C side, so calls
    through one FastBooster are serialised by a lock (a one-row call holds it for microseconds;
    batches go to the wrapped booster and do not take it).
    """

    def __init__(self, booster: lgb.Booster, table_min_rows: int | None = TABLE_MIN_ROWS) -> None:
        self.booster = booster
        self.table_min_rows = table_min_rows
        self._tables: Any = _UNTRIED
        self._tables_lock = threading.Lock()
        self.ncol = int(booster.num_feature())
        # the iteration Booster.predict uses when num_iteration is None (what every caller passes)
        self._num_iteration = int(booster.best_iteration)
        self._single = booster.num_model_per_iteration() == 1
        self._lock = threading.Lock()
        self._configs: dict[int, ctypes.c_void_p] = {}
        if self._single:
            for kind in (_NORMAL, _RAW, _CONTRIB):
                handle = ctypes.c_void_p()
                _safe_call(
                    _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                        booster._handle,
                        ctypes.c_int(kind),
                        ctypes.c_int(0),
                        ctypes.c_int(self._num_iteration),
                        ctypes.c_int(_DTYPE_FLOAT64),
                        ctypes.c_int32(self.ncol),
                        ctypes.c_char_p(b"num_threads=1"),
                        ctypes.byref(handle),
                    )
                )
                self._configs[kind] = handle
        # Fixed input/output buffers (used under the lock) so a call creates no ctypes objects: their
        # addresses and the config handles are plain ints passed through a private prototype.
        self._in = np.empty(self.ncol, dtype=np.float64)
        self._out = np.empty(self.ncol + 1, dtype=np.float64)
        self._len = np.zeros(1, dtype=np.int64)
        self._addr = (self._in.ctypes.data, self._len.ctypes.data, self._out.ctypes.data)
        self._handles = {kind: h.value for kind, h in self._configs.items()}
        self._fast_fn = _FAST_PROTO(("LGBM_BoosterPredictForMatSingleRowFast", _LIB))

    def __del__(self) -> None:
        try:
            for handle in getattr(self, "_configs", {}).values():
                _LIB.LGBM_FastConfigFree(handle)
        except Exception:  # interpreter shutdown may have torn down ctypes/lightgbm already
            pass

    def __getattr__(self, name: str) -> Any:
        # everything but predict (num_feature, feature_name, dump_model, ...) is the booster's
        return getattr(self.booster, name)

    def predict(
        self,
        data: Any,
        start_iteration: int = 0,
        num_iteration: int | None = None,
        raw_score: bool = False,
        pred_leaf: bool = False,
        pred_contrib: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Same contract as `lgb.Booster.predict`; one numpy row takes the fast path."""
        plain = (
            type(data) is np.ndarray
            and start_iteration == 0
            and num_iteration is None
            and not pred_leaf
            and kwargs.keys() <= _FAST_KWARGS
        )
        if not plain:
            return self.booster.predict(
                data,
                start_iteration=start_iteration,
                num_iteration=num_iteration,
                raw_score=raw_score,
                pred_leaf=pred_leaf,
                pred_contrib=pred_contrib,
                **kwargs,
            )
        kind = _CONTRIB if pred_contrib else _RAW if raw_score else _NORMAL
        memo = _SHARED.get()
        if memo is None:
            return self._predict(data, kind, kwargs)
        key = (id(self), id(data), kind)
        hit = memo.get(key)
        if hit is not None and hit[0] is data:
            return hit[1].copy()
        out = self._predict(data, kind, kwargs)
        memo[key] = (data, out)  # holding `data` keeps its id from being reused inside the block
        return out.copy()

    def _predict(self, data: np.ndarray, kind: int, kwargs: dict[str, Any]) -> Any:
        if self._single and data.ndim == 2 and data.shape[0] == 1 and data.shape[1] == self.ncol:
            return self.predict_row(data[0], kind)
        if (
            kind != _CONTRIB
            and self.table_min_rows is not None
            and data.ndim == 2
            and data.shape[0] >= self.table_min_rows
        ):
            out = self._table_predict(data, kind == _RAW)
            if out is not None:
                return out
        return self.booster.predict(data, raw_score=kind == _RAW, pred_contrib=kind == _CONTRIB, **kwargs)

    def _table_predict(self, data: np.ndarray, raw_score: bool) -> np.ndarray | None:
        """The batch from look-up tables, or None to use LightGBM. The first call builds the tables and
        checks them against LightGBM on this batch (same numbers, and faster) before trusting them."""
        tables = self._tables
        if tables is None:
            return None
        if tables is not _UNTRIED:
            return np.asarray(tables.predict(data, raw_score=raw_score))
        with self._tables_lock:
            if self._tables is not _UNTRIED:
                return self._table_predict(data, raw_score)
            from serving.treetables import TreeTables

            built = TreeTables.build(self.booster)
            t0 = time.thread_time()
            want = np.asarray(self.booster.predict(data, raw_score=raw_score, num_threads=1))
            t1 = time.thread_time()
            got = built.predict(data, raw_score=raw_score) if built is not None else None
            t2 = time.thread_time()
            agree = got is not None and bool(np.all(np.abs(got - want) <= 1e-9 * (1.0 + np.abs(want))))
            self._tables = built if agree and t2 - t1 < t1 - t0 else None
            return want

    @property
    def uses_tables(self) -> bool | None:
        """True/False once a large batch decided it; None before."""
        return None if self._tables is _UNTRIED else self._tables is not None

    def predict_row(self, row: np.ndarray, kind: int = _NORMAL) -> np.ndarray:
        """One row -> shape (1,) for normal/raw, (1, ncol + 1) for contributions (as Booster.predict)."""
        n_out = self.ncol + 1 if kind == _CONTRIB else 1
        p_in, p_len, p_out = self._addr
        with self._lock:
            self._in[:] = row
            _safe_call(self._fast_fn(self._handles[kind], p_in, p_len, p_out))
            if self._len[0] != n_out:
                raise ValueError(f"LightGBM single-row predict wrote {self._len[0]} values, expected {n_out}")
            out = self._out[:n_out].copy()
        return out.reshape(1, -1) if kind == _CONTRIB else out


def _fast_booster(booster: lgb.Booster, shared: dict[str, FastBooster] | None) -> FastBooster:
    """A FastBooster for `booster`; the same one for every booster with the same trees when `shared`."""
    if shared is None:
        return FastBooster(booster)
    key = booster.model_to_string()
    fast = shared.get(key)
    if fast is None:
        fast = shared[key] = FastBooster(booster)
    return fast


def _fast_value(value: Any, shared: dict[str, FastBooster] | None = None) -> Any:
    """A field value with its boosters wrapped (recursing into dicts and dataclasses), or itself."""
    if isinstance(value, lgb.Booster):
        return _fast_booster(value, shared)
    if isinstance(value, Mapping) and value and all(isinstance(v, lgb.Booster) for v in value.values()):
        return {k: _fast_booster(v, shared) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return accelerate(value, shared)
    return value


def _fast_calibrator(cal: Any) -> Any:
    """An isotonic calibrator's knots as float64 arrays: np.interp would convert the JSON lists per call."""
    if isinstance(cal, Mapping) and cal.get("method") == "isotonic":
        return {
            **cal,
            "x": np.asarray(cal["x"], dtype=np.float64),
            "y": np.asarray(cal["y"], dtype=np.float64),
        }
    return cal


def accelerate(model: Any, shared: dict[str, FastBooster] | None = None) -> Any:
    """A shallow copy of a model dataclass with every LightGBM booster inside it made a FastBooster.

    Pass one `shared` dict for all the models of a scorer so that identical boosters (the offer model keeps
    two copies of its conversion learner) become one FastBooster, whose answers `shared_predictions` reuses.

    Models that are not dataclasses (or hold no booster) are returned as they are: the fast path is an
    optimisation, never a requirement. The copy predicts exactly what the original predicts.
    """
    if not dataclasses.is_dataclass(model) or isinstance(model, type):
        return model
    changes = {}
    for f in dataclasses.fields(model):
        if not f.init:
            continue
        value = getattr(model, f.name)
        new = _fast_calibrator(value) if f.name == "calibrator" else _fast_value(value, shared)
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(model, **changes) if changes else model


__all__ = ["TABLE_MIN_ROWS", "FastBooster", "accelerate", "shared_predictions"]
