"""Configuration: dict, TOML and environment sources, precedence, and every kind of bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

import threadkit
from threadkit.config import Config, load_config
from threadkit.errors import ConfigError, ThreadkitError
from threadkit.registry import open_store

CORE_KEYS = (
    "backend",
    "store",
    "model",
    "base_url",
    "api_key_env",
    "requires_action_timeout",
    "run_timeout",
    "max_model_calls",
    "poll_timeout",
)
"""The keys of the local backend (service backends add their own)."""


def write(tmp_path: Path, text: str, name: str = "threadkit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- sources


def test_defaults() -> None:
    cfg = load_config({})
    assert cfg == Config()
    core = {k: v for k, v in cfg.to_dict().items() if k in CORE_KEYS}
    assert core == {
        "backend": "chat",
        "store": "memory://",
        "model": "offline",
        "base_url": None,
        "api_key_env": "OPENAI_API_KEY",
        "requires_action_timeout": 600.0,
        "run_timeout": 600.0,
        "max_model_calls": 25,
        "poll_timeout": None,
    }


def test_dict_source_and_config_passthrough() -> None:
    cfg = load_config(
        {
            "store": "sqlite:///x.db",
            "model": "openai:gpt-4o-mini",
            "base_url": "http://127.0.0.1:8000/v1",
            "api_key_env": "MY_KEY",
            "requires_action_timeout": 30,
            "run_timeout": 45.5,
            "max_model_calls": 4,
            "poll_timeout": 10,
        }
    )
    assert cfg.store == "sqlite:///x.db" and cfg.model == "openai:gpt-4o-mini"
    assert cfg.base_url == "http://127.0.0.1:8000/v1" and cfg.api_key_env == "MY_KEY"
    assert cfg.requires_action_timeout == 30.0 and isinstance(cfg.requires_action_timeout, float)
    assert (cfg.run_timeout, cfg.max_model_calls, cfg.poll_timeout) == (45.5, 4, 10.0)
    assert load_config(cfg) is cfg
    with pytest.raises(AttributeError):
        cfg.store = "memory://"  # type: ignore[misc]


def test_toml_top_level_and_threadkit_table(tmp_path: Path) -> None:
    flat = write(tmp_path, 'store = "sqlite:///a.db"\nmax_model_calls = 3\n', "flat.toml")
    assert load_config(flat).store == "sqlite:///a.db"
    assert load_config(str(flat)).max_model_calls == 3
    table = write(
        tmp_path,
        '[other]\nx = 1\n\n[threadkit]\nstore = "memory://t"\nrun_timeout = 12\n',
        "table.toml",
    )
    cfg = load_config(table)
    assert cfg.store == "memory://t" and cfg.run_timeout == 12.0
    assert cfg.model == "offline"  # defaults fill the gaps


def test_environment_source() -> None:
    env = {
        "THREADKIT_STORE": "sqlite:///env.db",
        "THREADKIT_MODEL": "openai:gpt-4o",
        "THREADKIT_RUN_TIMEOUT": "30",
        "THREADKIT_REQUIRES_ACTION_TIMEOUT": "2.5",
        "THREADKIT_MAX_MODEL_CALLS": "7",
        "THREADKIT_POLL_TIMEOUT": "9",
        "THREADKIT_BASE_URL": "",  # empty means unset
        "UNRELATED": "x",
    }
    cfg = load_config(environ=env)
    assert cfg.store == "sqlite:///env.db" and cfg.model == "openai:gpt-4o"
    assert (cfg.run_timeout, cfg.requires_action_timeout) == (30.0, 2.5)
    assert cfg.max_model_calls == 7 and cfg.poll_timeout == 9.0
    assert cfg.base_url is None
    assert load_config(environ={}) == Config()


def test_environment_overrides_the_config_file_it_names(tmp_path: Path) -> None:
    path = write(tmp_path, '[threadkit]\nstore = "sqlite:///file.db"\nmax_model_calls = 3\n')
    env = {"THREADKIT_CONFIG": str(path), "THREADKIT_STORE": "memory://env"}
    cfg = load_config(environ=env)
    assert cfg.store == "memory://env"  # the variable wins
    assert cfg.max_model_calls == 3  # the file fills what the environment does not say
    assert load_config(environ={"THREADKIT_CONFIG": str(path)}).store == "sqlite:///file.db"


def test_explicit_sources_ignore_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADKIT_STORE", "memory://from-env")
    monkeypatch.setenv("THREADKIT_MAX_MODEL_CALLS", "2")
    assert load_config().store == "memory://from-env"  # no argument: os.environ
    assert load_config().max_model_calls == 2
    assert load_config({"model": "offline"}).store == "memory://"
    path = write(tmp_path, 'model = "offline"\n')
    assert load_config(path).store == "memory://"
    assert load_config(path).max_model_calls == 25


# --------------------------------------------------------------------------- bad values


def config_error(source: Any, key: str | None, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load_config(source, **kw)
    assert exc.value.key == key, str(exc.value)
    assert isinstance(exc.value, ThreadkitError)
    if key is not None:
        assert repr(key) in str(exc.value)
    return exc.value


def test_unknown_key(tmp_path: Path) -> None:
    err = config_error({"stor": "memory://"}, "stor")
    assert "known keys" in str(err) and "store" in str(err)
    config_error(write(tmp_path, 'modle = "offline"\n'), "modle")
    config_error(
        write(tmp_path, '[threadkit]\nbackend = "chat"\ntimeout = 3\n', "t.toml"), "timeout"
    )


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"run_timeout": "soon"}, "run_timeout"),
        ({"requires_action_timeout": [1]}, "requires_action_timeout"),
        ({"max_model_calls": 2.5}, "max_model_calls"),
        ({"max_model_calls": "many"}, "max_model_calls"),
        ({"store": 5}, "store"),
        ({"model": None}, "model"),
        ({"base_url": 3}, "base_url"),
        ({"poll_timeout": "x"}, "poll_timeout"),
        ({"backend": ["chat"]}, "backend"),
    ],
)
def test_wrong_types(data: dict[str, Any], key: str) -> None:
    err = config_error(data, key)
    assert isinstance(err.__cause__, msgspec.ValidationError)


def test_wrong_type_in_toml_and_env(tmp_path: Path) -> None:
    config_error(write(tmp_path, 'run_timeout = "abc"\n'), "run_timeout")
    config_error(None, "max_model_calls", environ={"THREADKIT_MAX_MODEL_CALLS": "lots"})


@pytest.mark.parametrize("backend", ["nope", "", "Chat"])
def test_unknown_backend(backend: str) -> None:
    err = config_error({"backend": backend}, "backend")
    if backend:
        assert "chat" in str(err)  # the known names are listed


@pytest.mark.parametrize("store", ["not a url", "sqlite", "", "/tmp/x.db", "memory:"])
def test_malformed_store_url(store: str) -> None:
    config_error({"store": store}, "store")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "mongodb://127.0.0.1:27017/db"])
async def test_unknown_store_scheme(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        open_store(url)
    assert exc.value.key == "store" and "memory" in str(exc.value)
    with pytest.raises(ConfigError) as exc2:
        await threadkit.open_backend({"store": url})
    assert exc2.value.key == "store"


async def test_store_specific_url_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        await threadkit.open_backend({"store": "sqlite://somehost/x.db"})
    assert exc.value.key == "store"


@pytest.mark.parametrize("model", ["gpt-4o", "openai:", "anthropic:claude", "OFFLINE", ""])
def test_bad_model_spec(model: str) -> None:
    config_error({"model": model}, "model")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("requires_action_timeout", 0),
        ("requires_action_timeout", -1),
        ("run_timeout", -0.5),
        ("run_timeout", 0),
        ("poll_timeout", -3),
        ("poll_timeout", 0),
        ("max_model_calls", 0),
        ("max_model_calls", -2),
    ],
)
def test_non_positive_numbers(key: str, value: float) -> None:
    config_error({key: value}, key)


def test_missing_and_invalid_toml(tmp_path: Path) -> None:
    err = config_error(tmp_path / "absent.toml", None)
    assert "does not exist" in str(err)
    err = config_error(write(tmp_path, "store = \n"), None)
    assert "not valid TOML" in str(err)
    config_error(write(tmp_path, "threadkit = 5\n", "scalar.toml"), None)
    config_error(None, None, environ={"THREADKIT_CONFIG": str(tmp_path / "gone.toml")})


async def test_openai_model_without_its_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("THREADKIT_TEST_ABSENT_KEY", raising=False)
    cfg = {"model": "openai:gpt-4o-mini", "api_key_env": "THREADKIT_TEST_ABSENT_KEY"}
    assert load_config(cfg).model == "openai:gpt-4o-mini"  # valid as configuration
    with pytest.raises(ConfigError) as exc:
        await threadkit.open_backend(cfg)
    assert exc.value.key == "api_key_env"
    assert "THREADKIT_TEST_ABSENT_KEY" in str(exc.value)


async def test_open_backend_uses_the_configuration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cfg.db"
    path = write(tmp_path, f'[threadkit]\nstore = "{url}"\nmax_model_calls = 2\npoll_timeout = 5\n')
    async with await threadkit.open_backend(path) as backend:
        assert backend.settings["store"].endswith("/cfg.db")
        assert backend.settings["backend"] == "chat"
        assert backend.engine.max_model_calls == 2
        thread = await backend.create_thread()
        assert thread.poll.timeout == 5.0
    assert (tmp_path / "cfg.db").exists()
