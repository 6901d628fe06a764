"""One store, several surfaces: Foundry's thread listing shows classic threads only."""

from __future__ import annotations

import httpx
import pytest

from threadkit.testing.server import running_server

pytest.importorskip("uvicorn")

V1 = {"api-version": "v1"}


def test_foundry_list_threads_hides_conversations_and_response_chains() -> None:
    with running_server({"store": "memory://", "model": "offline"}) as server:
        base = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            threads = base + "/api/projects/p/threads"
            classic = []
            for i in range(5):
                r = http.post(threads, params=V1, json={"metadata": {"n": str(i)}})
                assert r.status_code == 200, r.text
                classic.append(r.json()["id"])
                # interleave other kinds of threads between the classic ones
                assert http.post("/v1/conversations", json={}).status_code == 200
                chain = http.post("/v1/responses", json={"model": "offline", "input": f"hi {i}"})
                assert chain.status_code == 200, chain.text

            def page(**params: str) -> dict:
                r = http.get(threads, params={**V1, **params})
                assert r.status_code == 200, r.text
                return r.json()

            newest_first = classic[::-1]
            first = page(limit="2")
            assert [t["id"] for t in first["data"]] == newest_first[:2]
            assert first["has_more"] is True
            second = page(limit="2", after=first["data"][-1]["id"])
            assert [t["id"] for t in second["data"]] == newest_first[2:4]
            last = page(limit="2", after=second["data"][-1]["id"])
            assert [t["id"] for t in last["data"]] == newest_first[4:]
            assert last["has_more"] is False
            back = page(limit="2", before=newest_first[4])
            assert [t["id"] for t in back["data"]] == newest_first[2:4]
            everything = page(limit="100", order="asc")
            assert [t["id"] for t in everything["data"]] == classic
