"""Run ``threadkit serve`` under uvicorn: :func:`serve` and the argument parser behind
``threadkit serve`` / ``python -m threadkit.server``.

Without API keys the server binds only to loopback addresses (``127.0.0.1``, ``::1``,
``localhost``) unless ``allow_remote`` is set: an unauthenticated Assistants endpoint on the
network would let anyone run (and pay for) the configured model.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from threadkit._extras import require
from threadkit.config import Config, load_config
from threadkit.errors import ConfigError, ThreadkitError
from threadkit.server.common import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "API_KEYS_ENV",
    "build_parser",
    "check_bind",
    "env_api_keys",
    "is_loopback",
    "main",
    "resolve_config",
    "serve",
]

API_KEYS_ENV = "THREADKIT_SERVER_API_KEYS"
"""The environment variable holding more accepted API keys, comma-separated."""


def env_api_keys(environ: Mapping[str, str] | None = None) -> list[str]:
    """The API keys in ``THREADKIT_SERVER_API_KEYS`` (comma-separated; blanks dropped)."""
    raw = (os.environ if environ is None else environ).get(API_KEYS_ENV, "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_keys: Sequence[str], allow_remote: bool) -> None:
    """Refuse a non-loopback bind without API keys unless ``allow_remote``.

    Raises:
        ConfigError: (key ``host``) the bind would expose an unauthenticated server.
    """
    if not is_loopback(host) and not any(api_keys) and not allow_remote:
        raise ConfigError(
            f"refusing to serve on {host!r} without API keys: anyone who can reach it could "
            "use the configured model. Give --api-key, or pass --allow-remote to do it anyway",
            key="host",
        )


def resolve_config(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    store: str | None = None,
    model: str | None = None,
    requires_action_timeout: float | None = None,
) -> Config:
    """The configuration with command-line overrides applied and validated.

    Raises:
        ConfigError: an invalid key or value.
    """
    cfg = load_config(config)
    overrides: dict[str, Any] = {}
    if store is not None:
        overrides["store"] = store
    if model is not None:
        overrides["model"] = model
    if requires_action_timeout is not None:
        overrides["requires_action_timeout"] = requires_action_timeout
    return load_config({**cfg.to_dict(), **overrides}) if overrides else cfg


def serve(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store: str | None = None,
    model: str | None = None,
    api_keys: Sequence[str] = (),
    requires_action_timeout: float | None = None,
    allow_remote: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
) -> None:
    """Serve the app with uvicorn until interrupted (blocks).

    Args:
        config: as for :func:`threadkit.server.create_app`.
        host, port: where to listen (default ``127.0.0.1:8000``).
        store: a store URL overriding the config (``sqlite:///threadkit.db``...).
        model: ``offline`` or ``openai:<model>``, overriding the config.
        api_keys: accepted API keys (none: no authentication, loopback only).
        requires_action_timeout: seconds a run waits for tool outputs.
        allow_remote: bind to a non-loopback address without API keys anyway.
        max_body_bytes: the request body limit in bytes.
        log_level: uvicorn's log level.

    Raises:
        ConfigError: an invalid configuration, or a non-loopback bind without keys.
        MissingExtraError: starlette or uvicorn is not installed.
    """
    check_bind(host, api_keys, allow_remote)
    cfg = resolve_config(
        config, store=store, model=model, requires_action_timeout=requires_action_timeout
    )
    uvicorn = require("uvicorn", "server", "threadkit serve")
    from threadkit.server.app import create_app

    app = create_app(cfg, api_keys=api_keys, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on")


def build_parser() -> argparse.ArgumentParser:
    """The ``threadkit serve`` argument parser."""
    p = argparse.ArgumentParser(
        prog="threadkit serve",
        description="Serve the Assistants v2 (/v1), Foundry classic (/api/projects/{project}) and "
        "Chat Completions wire protocols over a threadkit store and chat model.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--store", help="store URL, e.g. sqlite:///threadkit.db (default: config)")
    p.add_argument("--model", help="'offline' or 'openai:<model>' (default: config)")
    p.add_argument("--config", help="a threadkit.toml file (default: THREADKIT_* env)")
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        dest="api_keys",
        help=f"an accepted API key (repeatable; also {API_KEYS_ENV}, comma-separated)",
    )
    p.add_argument(
        "--requires-action-timeout",
        type=float,
        help="seconds a run waits for tool outputs before it expires",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback bind without API keys",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="request body limit in bytes (default 10 MiB)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve. Returns the exit status (2 for a configuration error)."""
    args = build_parser().parse_args(argv)
    keys = [*args.api_keys, *env_api_keys()]
    try:
        serve(
            args.config,
            host=args.host,
            port=args.port,
            store=args.store,
            model=args.model,
            api_keys=keys,
            requires_action_timeout=args.requires_action_timeout,
            allow_remote=args.allow_remote,
            max_body_bytes=args.max_body_bytes,
            log_level=args.log_level,
        )
    except ThreadkitError as exc:
        print(f"threadkit serve: {exc}", file=sys.stderr)
        return 2
    return 0
