"""Where the real Redis and PostgreSQL servers for the store tests are, and whether they are up.

Tests never mock these servers: a store test module calls :func:`redis_url` or
:func:`postgres_url` at import time and skips itself, with a reason naming the server, when the
server does not answer. Override the addresses with ``THREADKIT_TEST_REDIS`` (a ``redis://`` URL)
and ``THREADKIT_TEST_POSTGRES`` (a ``postgresql://`` URL).
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

__all__ = ["postgres_url", "redis_url"]

_REDIS = "redis://127.0.0.1:6379/0"
_POSTGRES_USERS = ("postgres", "root")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@functools.cache
def redis_url() -> tuple[str | None, str]:
    """``(url, "")`` when Redis answers PING, else ``(None, reason naming the server)``."""
    url = os.environ.get("THREADKIT_TEST_REDIS", _REDIS)
    parts = urlsplit(url)
    where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    if not _port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
        return None, f"Redis not reachable at {where}"
    try:
        import redis
    except ImportError:
        return None, 'redis-py is not installed (pip install "threadkit[redis]")'
    try:
        client = redis.Redis.from_url(url, socket_timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return None, f"Redis not usable at {where}: {exc}"
    return url, ""


@functools.cache
def postgres_url() -> tuple[str | None, str]:
    """``(url, "")`` for a PostgreSQL that accepts a connection to database ``test`` (as user
    ``postgres``, else ``root``), else ``(None, reason naming the server)``."""
    given = os.environ.get("THREADKIT_TEST_POSTGRES")
    candidates = (
        [given]
        if given
        else [f"postgresql://{user}@127.0.0.1:5432/test" for user in _POSTGRES_USERS]
    )
    first = urlsplit(candidates[0])
    where = f"{first.hostname or '127.0.0.1'}:{first.port or 5432}"
    if not _port_open(first.hostname or "127.0.0.1", first.port or 5432):
        return None, f"PostgreSQL not reachable at {where}"
    try:
        import psycopg
    except ImportError:
        return None, 'psycopg is not installed (pip install "threadkit[postgres]")'
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return url, ""
        except psycopg.Error as exc:
            errors.append(str(exc).strip())
    return None, f"PostgreSQL at {where} refused the test connection: {errors[-1]}"
