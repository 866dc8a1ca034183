"""Shared-infrastructure tests: real Postgres and Redis, each test session in its own namespace.

They run when REBUY_TEST_INFRA=1 (`.ci/run` sets it); otherwise every test that needs a server is skipped
with one summary line saying what to start. Isolation, so parallel sessions and workers never collide:
a Postgres database `rebuy_t_<random>` per session (dropped at teardown, with everything MLflow, Optuna
and the decision log put in it) and a Redis namespace (the Feast project `rebuy_t<random>`, part of
every key; its keys are deleted at teardown); the advisory-lock key derives from the database URL and
namespace, so it is namespaced the same way. Servers: REBUY_TEST_PG (a libpq URL of a database the
session may CREATE DATABASE from; default postgresql://postgres@127.0.0.1:5432/test) and REBUY_TEST_REDIS
(default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PG = os.environ.get("REBUY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("REBUY_TEST_REDIS", "redis://127.0.0.1:6379/0")
HOW = (
    "shared-infrastructure tests need REBUY_TEST_INFRA=1 and PostgreSQL on 127.0.0.1:5432 + Redis on "
    "127.0.0.1:6379 (`.ci/run` starts them: pg_ctlcluster ... main start; redis-server --daemonize yes ...)"
)


@dataclass(frozen=True)
class Infra:
    """One test session's private corner of the shared servers."""

    pg_url: str  # SQLAlchemy URL of the session's database
    redis_url: str
    namespace: str  # [stores] namespace: Feast project rebuy_<namespace>, lock keys


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    if os.environ.get("REBUY_TEST_INFRA") != "1":
        pytest.skip(HOW)
    import psycopg
    import redis

    tag = secrets.token_hex(6)
    db = f"rebuy_t_{tag}"
    try:
        admin = psycopg.connect(PG, autocommit=True, connect_timeout=5)
        client = redis.Redis.from_url(REDIS, socket_timeout=5)
        client.ping()
    except Exception as exc:  # a server that does not answer: say which and what to start
        pytest.fail(f"{exc}\n{HOW}", pytrace=False)
    admin.execute(f'CREATE DATABASE "{db}"')
    base = PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield Infra(pg_url=f"{base}/{db}", redis_url=REDIS, namespace=f"t{tag}")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        keys = list(client.scan_iter(match=f"*rebuy_t{tag}*".encode(), count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


@pytest.fixture
def redis_client(infra: Infra):  # type: ignore[no-untyped-def]
    import redis

    c = redis.Redis.from_url(infra.redis_url)
    yield c
    c.close()


_counter = iter(range(1_000_000))


@pytest.fixture
def namespace(infra: Infra) -> str:
    """A namespace of its own per test (inside the session's, so teardown finds its keys)."""
    return f"{infra.namespace}_{next(_counter)}"


@pytest.fixture
def stores_config(infra: Infra, namespace: str):  # type: ignore[no-untyped-def]
    """A factory: a Config on a data directory whose [stores] use this test's namespace and `stores`."""
    from rebuy.config import Config, PathsConfig, StoresConfig

    def make(data_dir, **stores):  # type: ignore[no-untyped-def]
        stores.setdefault("namespace", namespace)
        return Config(paths=PathsConfig(data_dir=data_dir), stores=StoresConfig(**stores))

    return make
