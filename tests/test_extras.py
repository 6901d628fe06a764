"""Optional dependencies: a missing extra fails with MissingExtraError naming the pip command.

Missing packages are simulated by putting ``None`` in ``sys.modules`` (which makes ``import``
fail with ``ModuleNotFoundError``) and dropping threadkit's already imported modules that use
them, so the import really runs again.
"""

from __future__ import annotations

import sys

import pytest

import threadkit
from threadkit._extras import require
from threadkit.errors import ConfigError, MissingExtraError, ThreadkitError
from threadkit.registry import STORES, RegistryEntry, open_store


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import m`` fail for each module, and forget threadkit modules importing them."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)
    for loaded in [m for m in sys.modules if m.startswith("threadkit.stores.")]:
        if loaded.rsplit(".", 1)[-1] in ("redis", "postgres"):
            monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.delitem(sys.modules, "threadkit.adapters.chat_completions", raising=False)


def check(err: MissingExtraError, extra: str) -> None:
    assert isinstance(err, ImportError) and isinstance(err, ThreadkitError)
    assert f'pip install "threadkit[{extra}]"' in str(err)
    assert err.extra == extra


def test_require_imports_or_names_the_extra() -> None:
    assert require("json", "none").dumps([1]) == "[1]"
    with pytest.raises(MissingExtraError) as exc:
        require("threadkit_no_such_module_xyz", "widgets", "the widget store")
    check(exc.value, "widgets")
    assert exc.value.package == "threadkit_no_such_module_xyz"
    assert "the widget store" in str(exc.value)
    assert isinstance(exc.value.__cause__, ModuleNotFoundError)
    # callers may catch it as a plain ImportError
    with pytest.raises(ImportError):
        require("threadkit_no_such_module_xyz", "widgets")


async def test_missing_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "redis")
    with pytest.raises(MissingExtraError) as exc:
        open_store("redis://127.0.0.1:6379/0")
    check(exc.value, "redis")
    with pytest.raises(MissingExtraError) as exc2:
        await threadkit.open_backend({"store": "redis://127.0.0.1:6379/0"})
    check(exc2.value, "redis")
    # configuration itself stays valid: only opening the store needs the package
    assert threadkit.load_config({"store": "redis://127.0.0.1:6379/0"}).store.startswith("redis")


async def test_missing_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "psycopg", "psycopg_pool")
    with pytest.raises(MissingExtraError) as exc:
        open_store("postgresql://127.0.0.1:5432/test")
    check(exc.value, "postgres")


async def test_missing_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "openai")
    monkeypatch.setenv("THREADKIT_TEST_KEY", "sk-test")
    with pytest.raises(MissingExtraError) as exc:
        await threadkit.open_backend(
            {"model": "openai:gpt-4o-mini", "api_key_env": "THREADKIT_TEST_KEY"}
        )
    check(exc.value, "openai")


def test_registered_store_whose_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        STORES, "widget", RegistryEntry("threadkit_no_such_pkg.store:WidgetStore", "widgets")
    )
    with pytest.raises(MissingExtraError) as exc:
        open_store("widget://somewhere")
    check(exc.value, "widgets")


async def test_the_stores_load_when_their_packages_are_there() -> None:
    # the same URL opens (without connecting) when nothing is hidden
    store = open_store("redis://127.0.0.1:6379/0")
    assert type(store).__name__ == "RedisStore"
    await store.close()
    with pytest.raises(ConfigError):
        open_store("nosuchscheme://x")
