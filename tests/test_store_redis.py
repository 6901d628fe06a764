"""RedisStore passes the message-store conformance suite, plus Redis-only checks (TTL, prefix)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
import redis

from tests.servers import redis_url
from threadkit._ids import new_id
from threadkit.errors import ConfigError, MissingExtraError, StoreError, ThreadNotFoundError
from threadkit.registry import open_store
from threadkit.stores.redis import RedisStore
from threadkit.testing.store_suite import (
    StoreConformance,
    make_run,
    make_step,
    tool_call,
    tool_result,
    turn,
    user,
)

URL, WHY = redis_url()
pytestmark = pytest.mark.skipif(URL is None, reason=WHY)


async def _drop(store: RedisStore) -> None:
    keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}:*", count=500)]
    if keys:
        await store.client.delete(*keys)


@pytest.fixture
async def fresh() -> AsyncIterator[RedisStore]:
    """A store on a unique prefix, its keys deleted afterwards."""
    s = RedisStore.from_url(f"{URL}?prefix={new_id('tktest')}")
    yield s
    await _drop(s)
    await s.close()


class TestRedisStore(StoreConformance):
    reopen_by_locator = True  # the locator keeps the prefix

    @pytest.fixture
    async def store(self, fresh: RedisStore) -> AsyncIterator[RedisStore]:
        await fresh.setup()
        yield fresh


# ------------------------------------------------------------------------------ Redis-only


async def _thread_keys(store: RedisStore, thread_id: str) -> list[str]:
    pattern = f"{store.prefix}:t:{{{thread_id}}}*"
    return sorted([k.decode() async for k in store.client.scan_iter(match=pattern)])


async def _fill(store: RedisStore, thread_id: str) -> None:
    """Write something into every kind of key a thread has."""
    await store.append(thread_id, turn("a"), idempotency_key="k")
    await store.append(thread_id, [tool_call("call_1"), tool_result("call_1")])
    run = await store.create_run(make_run(thread_id))
    await store.put_step(make_step(run))


async def test_ttl_is_set_on_every_key_of_the_thread(fresh: RedisStore) -> None:
    store = RedisStore(fresh.client, prefix=fresh.prefix, ttl=1000)
    t = await store.create_thread()
    await _fill(store, t.id)
    keys = await _thread_keys(store, t.id)
    assert len(keys) == 12  # every key of the layout exists now
    for key in keys:
        assert 900 < await store.client.ttl(key) <= 1000, key


@pytest.mark.parametrize("write", ["append", "update_thread", "update_run", "put_step"])
async def test_ttl_is_refreshed_on_write(fresh: RedisStore, write: str) -> None:
    store = RedisStore(fresh.client, prefix=fresh.prefix, ttl=1000)
    t = await store.create_thread()
    await _fill(store, t.id)
    keys = await _thread_keys(store, t.id)
    for key in keys:
        await store.client.expire(key, 50)
    run = (await store.list_runs(t.id)).data[0]
    if write == "append":
        await store.append(t.id, [user("again")])
    elif write == "update_thread":
        await store.update_thread(t.id, metadata={"a": "b"})
    elif write == "update_run":
        await store.update_run(run)
    else:
        await store.put_step(make_step(run))
    for key in keys:
        assert await store.client.ttl(key) > 900, key


async def test_reads_do_not_refresh_ttl(fresh: RedisStore) -> None:
    store = RedisStore(fresh.client, prefix=fresh.prefix, ttl=1000)
    t = await store.create_thread()
    await _fill(store, t.id)
    keys = await _thread_keys(store, t.id)
    for key in keys:
        await store.client.expire(key, 50)
    await store.list_messages(t.id)
    await store.tail(t.id, 3)
    await store.get_thread(t.id)
    for key in keys:
        assert await store.client.ttl(key) <= 50, key


async def test_without_ttl_keys_persist(fresh: RedisStore) -> None:
    t = await fresh.create_thread()
    await _fill(fresh, t.id)
    for key in await _thread_keys(fresh, t.id):
        assert await fresh.client.ttl(key) == -1, key


@pytest.mark.slow
async def test_expired_thread_is_gone_whole(fresh: RedisStore) -> None:
    store = RedisStore(fresh.client, prefix=fresh.prefix, ttl=1)
    t = await store.create_thread()
    keep = await fresh.create_thread()  # no ttl
    await _fill(store, t.id)
    await asyncio.sleep(2.2)
    with pytest.raises(ThreadNotFoundError):
        await store.get_thread(t.id)
    assert await _thread_keys(store, t.id) == []
    assert [i.id for i in (await store.list_threads()).data] == [keep.id]
    # the registry entry of the expired thread was dropped by that listing
    assert await store.client.zscore(f"{store.prefix}:threads", t.id) is None


async def test_delete_thread_leaves_no_key(fresh: RedisStore) -> None:
    t = await fresh.create_thread()
    await _fill(fresh, t.id)
    assert await fresh.delete_thread(t.id)
    assert await _thread_keys(fresh, t.id) == []
    assert await fresh.client.zscore(f"{fresh.prefix}:threads", t.id) is None


async def test_prefixes_are_isolated(fresh: RedisStore) -> None:
    other = RedisStore.from_url(f"{URL}?prefix={fresh.prefix}x")
    try:
        a = await fresh.create_thread(thread_id="thread_same", metadata={"who": "a"})
        b = await other.create_thread(thread_id="thread_same", metadata={"who": "b"})
        await fresh.append(a.id, [user("in a")])
        await other.append(b.id, [user("in b 1"), user("in b 2")])
        assert (await fresh.get_thread("thread_same")).metadata == {"who": "a"}
        assert [m.text for m in await fresh.tail("thread_same", 5)] == ["in a"]
        assert await other.count_messages("thread_same") == 2
        await other.put_object("agent", "agent_1", b"b")
        assert (await fresh.list_objects("agent")).data == []
        assert await other.delete_thread("thread_same")
        assert [m.text for m in await fresh.tail("thread_same", 5)] == ["in a"]
        keys = [k.decode() async for k in fresh.client.scan_iter(match=f"{fresh.prefix}:*")]
        assert keys and all(k.startswith(f"{fresh.prefix}:") for k in keys)
    finally:
        await _drop(other)
        await other.close()


def test_from_url_options_and_locator() -> None:
    s = RedisStore.from_url("redis://:secret@127.0.0.1:6379/2?prefix=tk&ttl=60")
    assert s.prefix == "tk" and s.ttl == 60
    assert s.locator == "redis://127.0.0.1:6379/2?prefix=tk&ttl=60"
    assert "secret" not in s.locator
    s = RedisStore.from_url("redis://ann:secret@127.0.0.1:6379/0?password=x", prefix="p", ttl=5)
    assert s.locator == "redis://ann@127.0.0.1:6379/0?prefix=p&ttl=5"
    s = RedisStore.from_url("redis://127.0.0.1:6379")
    assert s.prefix == "threadkit" and s.ttl is None
    assert s.locator == "redis://127.0.0.1:6379?prefix=threadkit"


@pytest.mark.parametrize("url", ["redis://127.0.0.1?ttl=soon", "redis://127.0.0.1?ttl=0"])
def test_bad_ttl_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        RedisStore.from_url(url)


def test_decoding_client_is_refused() -> None:
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisStore.from_url("redis://127.0.0.1:6379/0", decode_responses=True)


def test_open_store_by_url() -> None:
    s = open_store("redis://127.0.0.1:6379/0?prefix=via_registry")
    assert isinstance(s, RedisStore) and s.prefix == "via_registry"


async def test_redis_errors_become_store_errors() -> None:
    s = RedisStore.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        with pytest.raises(StoreError) as info:
            await s.create_thread()
        assert isinstance(info.value.__cause__, redis.RedisError)
    finally:
        await s.close()


def test_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError) as info:
        RedisStore.from_url("redis://127.0.0.1:6379/0")
    assert 'pip install "threadkit[redis]"' in str(info.value)
