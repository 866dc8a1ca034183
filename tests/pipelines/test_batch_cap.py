"""The orchestrator never sends the service a larger /score batch than the service accepts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.orchestrator import run_pass
from tests.support.fake_client import FakeScoreClient

from .conftest import AS_OF, config_for


class RecordingClient(FakeScoreClient):
    """The fake scorer, remembering the size of every batch it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def score(
        self, customer_ids: Sequence[str], offers: Sequence[str] | None, as_of: pd.Timestamp | None
    ) -> list[dict[str, Any]]:
        self.sizes.append(len(customer_ids))
        return super().score(customer_ids, offers, as_of)


def test_score_batches_are_capped_at_the_services_max_batch(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path, score_batch_size=50, score_concurrency=1)
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"max_batch": 7})})
    client = RecordingClient()
    run_pass(cfg, AS_OF, shop, client, dry_run=True)
    assert client.sizes and max(client.sizes) == 7  # capped, and full batches were sent
    assert sum(client.sizes) == len(set(client.scored))  # every candidate scored once


def test_score_batches_follow_the_policy_size_below_the_cap(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path, score_batch_size=9, score_concurrency=2)
    client = RecordingClient()
    run_pass(cfg, AS_OF, shop, client, dry_run=True)
    assert max(client.sizes) == 9
