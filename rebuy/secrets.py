"""Secrets: the one way rebuy reads passwords, tokens and keys — never from rebuy.toml, never logged.

A secret has a name (`SECRET_NAMES`) and is looked up, first hit wins, in:

1. the environment variable `REBUY_<NAME>` (e.g. `REBUY_ADMIN_TOKEN`);
2. the file named by `REBUY_<NAME>_FILE` (e.g. a Docker/Kubernetes secret mount);
3. the file `<stores.secrets_dir>/<name>` when `[stores] secrets_dir` is set.

A file must be readable by its owner only (mode 0600 or 0400): a group- or world-readable file is refused
with an error that says how to fix it (`chmod 600 FILE`), as ssh and libpq refuse theirs. One trailing
newline is stripped. Values come back as pydantic `SecretStr`, whose repr and str are `**********`, so a
secret that reaches a log line or a traceback shows nothing; call `.get_secret_value()` at the one place
that needs the value.

Public API (for every stage; `rebuy` core, so any stage may import it):

    from rebuy.secrets import secret, require_secret
    token = secret(cfg, "admin_token")          # SecretStr | None (None: not configured)
    key = require_secret(cfg, "forget_key")     # SecretStr, or SecretError saying where to put it

Names: `database_password` (every Postgres store: MLflow, Optuna, decision log, prediction log; handed to
libpq as PGPASSWORD by `database_env`, so no URL ever holds it), `redis_password` (the Redis online
store), `admin_token` (serving's admin endpoints), `webhook_secret` (the webhook sink's HMAC key),
`forget_key` (the key of the forget list's hashes).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from rebuy.errors import RebuyError

if TYPE_CHECKING:
    from rebuy.config import Config

SECRET_NAMES = ("database_password", "redis_password", "admin_token", "webhook_secret", "forget_key")


class SecretError(RebuyError):
    """A secret that is missing where it is required, or stored unsafely."""


def env_name(name: str) -> str:
    return f"REBUY_{name.upper()}"


def _check_name(name: str) -> None:
    if name not in SECRET_NAMES:
        raise SecretError(f"unknown secret {name!r}; known: {list(SECRET_NAMES)}")


def read_secret_file(path: Path) -> SecretStr:
    """A secret file's content; refuses files that others may read (or that are not regular files)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretError(f"secret file {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"secret file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SecretError(
            f"secret file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}` so only its owner can read it"
        )
    text = path.read_text(encoding="utf-8")
    return SecretStr(text[:-1] if text.endswith("\n") else text)


def secret(cfg: Config | None, name: str) -> SecretStr | None:
    """The secret `name`, or None when it is configured nowhere (see the module docstring)."""
    _check_name(name)
    var = env_name(name)
    value = os.environ.get(var)
    if value:
        return SecretStr(value)
    file = os.environ.get(f"{var}_FILE")
    if file:
        return read_secret_file(Path(file))
    folder = cfg.stores.secrets_dir if cfg is not None else None
    if folder is not None:
        path = Path(folder) / name
        if path.exists():
            return read_secret_file(path)
    return None


def require_secret(cfg: Config | None, name: str) -> SecretStr:
    """The secret `name`; a SecretError that says where to put it when it is missing."""
    got = secret(cfg, name)
    if got is None or not got.get_secret_value():
        var = env_name(name)
        where = f"set {var}, or {var}_FILE to a file only you can read (chmod 600)"
        if cfg is not None and cfg.stores.secrets_dir is not None:
            where += f", or write it to {Path(cfg.stores.secrets_dir) / name} (chmod 600)"
        else:
            where += ", or set [stores] secrets_dir and write a file named " + name + " there (chmod 600)"
        raise SecretError(f"the secret {name!r} is required but not configured: {where}")
    return got


def database_env(cfg: Config) -> None:
    """Hand `database_password` to libpq (PGPASSWORD) for every Postgres store of this process and the
    processes it starts; an explicit PGPASSWORD or PGPASSFILE in the environment wins. Idempotent."""
    if os.environ.get("PGPASSWORD") or os.environ.get("PGPASSFILE"):
        return
    pw = secret(cfg, "database_password")
    if pw is not None and pw.get_secret_value():
        os.environ["PGPASSWORD"] = pw.get_secret_value()
