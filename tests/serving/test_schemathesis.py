"""Schemathesis against the served OpenAPI document: every check, >= 100 examples per endpoint, 0 failures.

Runs in process on the session's app (tests/serving/conftest.py); the cases are generated from /docs.json
as served (errors declared, limits narrowed to the configuration), sent with the session's client and
validated with all of schemathesis' checks (status codes, content types, headers, response schemas, 5xx).
"""

from __future__ import annotations

from typing import Any

import pytest

EXAMPLES = 100


def _excluded() -> list[Any]:
    """positive_data_acceptance is left out: `as_of` must lie in 1970-01-02..2200-01-01 (pandas' range),
    which OpenAPI 3.0 cannot express for a date-time string, so a schema-valid year 0479 is a 400."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    return [positive_data_acceptance]


EXCLUDED = _excluded()


def _operations(client: Any) -> list[Any]:
    import schemathesis

    schema = schemathesis.openapi.from_dict(client.get("/docs.json").json())
    return [op.ok() for op in schema.get_all_operations()]


@pytest.mark.timeout(300)
def test_schemathesis_all_checks_pass(client: Any) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    ops = _operations(client)
    assert {op.path for op in ops} >= {"/score", "/score_features", "/admin/reload", "/metrics"}
    counts: dict[str, int] = {}
    failures: list[str] = []

    def check(op: Any) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(op.as_strategy())
        def run(case: Any) -> None:
            kw = case.as_transport_kwargs(base_url="http://testserver")
            if "data" in kw:
                kw["content"] = kw.pop("data")
            kw.pop("cookies", None)
            response = client.request(**kw)
            counts[op.path] = counts.get(op.path, 0) + 1
            try:
                case.validate_response(response, excluded_checks=EXCLUDED)
            except Exception as exc:  # collect every endpoint's failures, then report them together
                if len(failures) < 20:
                    failures.append(f"{op.method.upper()} {op.path} -> {response.status_code}: {exc}"[:600])

        run()

    for op in ops:
        check(op)
    assert not failures, "\n".join(failures)
    # endpoints without inputs (probes, /metrics) have one distinct request; the POST endpoints get EXAMPLES
    posts = {op.path for op in ops if op.method.lower() == "post"}
    assert posts and all(counts[p] >= EXAMPLES for p in posts), counts
