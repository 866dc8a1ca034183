"""Adapter: the production Scorer from the MLflow @champion models and the Feast online store.

Everything that touches MLflow or Feast for serving is here, so `serving.scorer` stays pure and a
missing registry or store fails at start-up with a message that says what to run.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from rebuy.config import Config
from rebuy.errors import RebuyError
from serving.scorer import OFFER_MODEL, SCORE_MODELS, Scorer, StartupError

log = logging.getLogger(__name__)


def load_models(cfg: Config) -> dict[str, Any]:
    """The four scoring champions; a clear StartupError naming what is missing and what to run."""
    uri = cfg.mlflow_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # Checked before MLflow is touched: it would create (and migrate) an empty registry instead.
        raise StartupError(
            f"cannot start serving: no model registry at {uri}\n"
            "what to do: run `rebuy train all` (and `rebuy train offer`) with this data directory first"
        )
    from training.registry import load_champion

    models: dict[str, Any] = {}
    missing: list[str] = []
    for name in SCORE_MODELS:
        try:
            models[name] = load_champion(cfg, name)
        except RebuyError as exc:
            missing.append(f"{name}: {exc}")
        except Exception as exc:  # an unreachable or corrupt registry must still say where it is
            missing.append(f"{name}: {type(exc).__name__}: {exc}")
    if missing:
        raise StartupError(
            f"cannot start serving: model registry {cfg.mlflow_uri} lacks champions —\n  "
            + "\n  ".join(missing)
            + "\nwhat to do: run `rebuy train all` (and `rebuy train offer`) against this data directory first"
        )
    return models


def load_offer_model(cfg: Config) -> Any | None:
    """The offer (uplift) champion as an OfferModel, or None when offer training is not available yet.

    Without it every offer's estimate is 0 and best_offer is 'none' — the orchestrator then only
    explores; this is logged loudly rather than refusing to serve churn and repurchase scores.
    """
    try:
        import training.offer as offer_stage
    except ImportError:
        log.warning("serving: training.offer is not available; offer estimates will be 0")
        return None
    loader = getattr(offer_stage, "load_offer_champion", None)
    if loader is None:
        log.warning("serving: training.offer.load_offer_champion is missing; offer estimates will be 0")
        return None
    return loader(cfg)


def load_readers(cfg: Config, services: set[str]) -> dict[str, Any]:
    """One online reader per FeatureService, all over one store connection (features.online.OnlineStoreReader:
    each feature view is read once per request however many services use it); fails when the store was
    never applied/materialized.
    """
    try:
        from features.online import OnlineStoreReader
    except ImportError as exc:
        raise StartupError(
            f"cannot start serving: the online feature reader is not available ({exc})"
        ) from exc
    try:
        shared = OnlineStoreReader(cfg, sorted(services))
    except RebuyError as exc:
        raise StartupError(f"cannot start serving: online store: {exc}") from exc
    except Exception as exc:  # e.g. sqlite or Feast registry errors: say which store
        raise StartupError(
            f"cannot start serving: online store for {sorted(services)} under {cfg.paths.feast_dir}: "
            f"{type(exc).__name__}: {exc}\nwhat to do: run `rebuy features apply` and "
            "`rebuy features materialize` first"
        ) from exc
    return dict(shared.readers)


def champion_versions(cfg: Config) -> dict[str, str]:
    """Where @champion points now (cheap: alias lookups only) — the service polls this to reload."""
    from training.registry import alias_version

    out = {name: alias_version(cfg, name, "champion") for name in SCORE_MODELS}
    try:
        from training.offer import REGISTERED_NAME

        out[OFFER_MODEL] = alias_version(cfg, REGISTERED_NAME, "champion")
    except ImportError:
        pass
    return {k: str(v) for k, v in out.items() if v is not None}


def high_value_cut(meta: dict[str, Any], cfg: Config) -> float:
    """The value model's high-value threshold: `value_cut` written at training, else derived from its stored
    test-prediction quantiles (older versions), else +inf (nobody is high_value, said loudly)."""
    from training.segments import value_cut_from_meta

    if meta.get("value_cut") is not None:
        return float(meta["value_cut"])
    if meta.get("prediction_quantiles"):
        return value_cut_from_meta(meta, cfg.training.segments)
    log.warning("serving: the value champion has no 'value_cut' in its metadata; no customer is high_value")
    return float("inf")


def scorer_from_registry(cfg: Config) -> Scorer:
    """The default REBUY_SCORER_FACTORY: champions + their FeatureServices' online readers."""
    from training.segments import segment

    models = load_models(cfg)
    offer = load_offer_model(cfg)
    services = {m.feature_service for m in models.values()}
    if offer is not None:
        services.add(offer.feature_service)
    cut = high_value_cut(models["value"].meta, cfg)
    return Scorer(
        models=models,
        readers=load_readers(cfg, services),
        segmenter=partial(segment, cut=float(cut), cfg=cfg.training.segments),
        catalogue=tuple(cfg.offers.catalogue),
        offer_model=offer,
    )


__all__ = [
    "OFFER_MODEL",
    "champion_versions",
    "high_value_cut",
    "load_models",
    "load_offer_model",
    "load_readers",
    "scorer_from_registry",
]
