"""Configuration: one set of keys from a dict, a ``threadkit.toml`` file or the environment.

Keys (the same names in TOML, in a dict, and as ``THREADKIT_<KEY>`` environment variables):

========================== ============================================ ==========================
key                        meaning                                      default
========================== ============================================ ==========================
``backend``                ``chat`` (local threads; service backends    ``chat``
                           are added by their adapters)
``store``                  store URL: ``memory://``, ``sqlite:///x.db``, ``memory://``
                           ``redis://...``, ``postgresql://...``
``model``                  ``offline`` (ScriptedModel) or               ``offline``
                           ``openai:<model>`` (OpenAIChatModel)
``base_url``               the model endpoint (OpenAI-compatible)       SDK default
``api_key_env``            NAME of the env var holding the API key      ``OPENAI_API_KEY``
``requires_action_timeout`` seconds a run waits for tool outputs         ``600``
``run_timeout``            seconds an active run holds its thread       ``600``
                           without progress (crashed-holder lease)
``max_model_calls``        model calls per run before ``incomplete``    ``25``
``poll_timeout``           seconds ``run()`` waits before RunTimeoutError none
``retry_failed_runs``      times ``run()`` retries a ``failed`` run      ``0``
                           (exponential backoff from 1 s)
``endpoint``               service endpoint: a Foundry project URL       none
                           (``https://<res>.services.ai.azure.com/api/
                           projects/<project>``)
``credential``             ``default`` (DefaultAzureCredential) or       ``default``
                           ``api_key`` (the key in ``api_key_env``)
``allow_insecure_loopback`` allow plain ``http://`` (and bearer tokens    ``false``
                           over it) to 127.0.0.1, ::1 and localhost
                           only, e.g. ``threadkit serve``
``agent_id``               the service agent to run: an assistant/agent  none (created from
                           id, or a Foundry agent name (foundry-agents)  the Agent given)
``responses_mode``         ``previous_response_id``, ``conversation``    ``previous_response_id``
                           or ``store`` (history in ``store``, sent in
                           full each turn with ``store=false``)
``background``             Responses runs in background mode (polled)    ``false``
========================== ============================================ ==========================

Secrets never go in a configuration: ``api_key_env`` names the environment variable that holds
the key, and Azure credentials come from ``azure-identity``.

Precedence: an explicit dict or file is used as given (defaults fill the gaps); with no argument,
``THREADKIT_CONFIG`` may name a TOML file, and ``THREADKIT_*`` variables override it. A TOML file
may hold the keys at top level or under a ``[threadkit]`` table.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from threadkit.errors import ConfigError
from threadkit.registry import BACKENDS, _load_entry_points, store_scheme

__all__ = ["Config", "load_config", "make_model"]


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Validated threadkit configuration (see the module docstring for every key)."""

    backend: str = "chat"
    store: str = "memory://"
    model: str = "offline"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    requires_action_timeout: float = 600.0
    run_timeout: float = 600.0
    max_model_calls: int = 25
    poll_timeout: float | None = None
    retry_failed_runs: int = 0
    endpoint: str | None = None
    credential: str = "default"
    allow_insecure_loopback: bool = False
    agent_id: str | None = None
    responses_mode: str = "previous_response_id"
    background: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict (no secrets are ever in it)."""
        return msgspec.structs.asdict(self)


_KEYS = tuple(Config.__struct_fields__)
_CREDENTIALS = ("default", "api_key")
_RESPONSES_MODES = ("previous_response_id", "conversation", "store")


def _from_mapping(data: Mapping[str, Any], source: str) -> Config:
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise ConfigError(
            f"unknown key in {source} (known keys: {', '.join(_KEYS)})", key=unknown[0]
        )
    try:
        cfg = msgspec.convert(dict(data), Config, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        key = text.rsplit("$.", 1)[-1].split("[", 1)[0].strip("`' ") if "$." in text else None
        raise ConfigError(f"{text} (in {source})", key=key) from exc
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    if not cfg.backend:
        raise ConfigError("must name a backend", key="backend")
    if cfg.backend not in BACKENDS:
        _load_entry_points()
        if cfg.backend not in BACKENDS:
            raise ConfigError(
                f"unknown backend {cfg.backend!r} (known: {', '.join(sorted(BACKENDS))})",
                key="backend",
            )
    store_scheme(cfg.store)
    if cfg.model != "offline" and not cfg.model.startswith("openai:"):
        raise ConfigError(
            f"{cfg.model!r} is not a model; use 'offline' or 'openai:<model>'", key="model"
        )
    if cfg.model.startswith("openai:") and not cfg.model[len("openai:") :]:
        raise ConfigError("'openai:' needs a model name, e.g. 'openai:gpt-4o-mini'", key="model")
    for key in ("requires_action_timeout", "run_timeout"):
        if getattr(cfg, key) <= 0:
            raise ConfigError("must be a positive number of seconds", key=key)
    if cfg.max_model_calls < 1:
        raise ConfigError("must be at least 1", key="max_model_calls")
    if cfg.retry_failed_runs < 0:
        raise ConfigError("must be 0 or more", key="retry_failed_runs")
    if cfg.poll_timeout is not None and cfg.poll_timeout <= 0:
        raise ConfigError("must be a positive number of seconds", key="poll_timeout")
    if cfg.credential not in _CREDENTIALS:
        raise ConfigError(
            f"{cfg.credential!r} is not a credential kind; use one of {', '.join(_CREDENTIALS)}",
            key="credential",
        )
    if cfg.responses_mode not in _RESPONSES_MODES:
        raise ConfigError(
            f"{cfg.responses_mode!r} is not a Responses mode; use one of "
            f"{', '.join(_RESPONSES_MODES)}",
            key="responses_mode",
        )
    for key in ("endpoint", "base_url"):
        value = getattr(cfg, key)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{value!r} is not an http(s) URL", key=key)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = raw.get("threadkit", raw)
    if not isinstance(table, dict):
        raise ConfigError(f"[threadkit] in {path} must be a table")
    return table


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _KEYS:
        value = environ.get(f"THREADKIT_{key.upper()}")
        if value is not None and value != "":
            out[key] = value
    return out


def load_config(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build a validated :class:`Config`.

    Args:
        config: a Config (returned as is), a dict of keys, the path of a TOML file, or None to
            read ``THREADKIT_CONFIG`` (a TOML path) and ``THREADKIT_*`` environment variables.
        environ: the environment to read (default ``os.environ``).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, an unknown backend, a malformed
            store URL or model, a missing or invalid file. ``err.key`` names the key at fault.
    """
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return _from_mapping(config, "the config dict")
    if config is not None:
        path = Path(config)
        return _from_mapping(_read_toml(path), str(path))
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    file = env.get("THREADKIT_CONFIG")
    if file:
        data.update(_read_toml(Path(file)))
    data.update(_from_env(env))
    return _from_mapping(data, "THREADKIT_* environment variables")


def make_model(cfg: Config) -> Any:
    """The :class:`~threadkit.models.ChatModel` a configuration names.

    Raises:
        ConfigError: (key ``api_key_env``) the API key env var is unset for ``openai:``.
        MissingExtraError: ``openai:`` without the ``openai`` extra installed.
    """
    if cfg.model == "offline":
        from threadkit.testing.scripted import ScriptedModel

        return ScriptedModel()
    from threadkit.adapters.chat_completions import OpenAIChatModel

    return OpenAIChatModel.from_config(
        cfg.model, base_url=cfg.base_url, api_key_env=cfg.api_key_env
    )
