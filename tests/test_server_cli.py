"""``threadkit serve`` options: loopback rule, config overrides, the parser, the missing extra,
and one real ``python -m threadkit.server`` process."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from threadkit.errors import ConfigError, MissingExtraError  # noqa: E402
from threadkit.server.cli import (  # noqa: E402
    build_parser,
    check_bind,
    is_loopback,
    main,
    resolve_config,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_keys_or_allow_remote() -> None:
    with pytest.raises(ConfigError, match="allow-remote") as info:
        check_bind("0.0.0.0", [], allow_remote=False)
    assert info.value.key == "host"
    check_bind("0.0.0.0", ["k"], allow_remote=False)
    check_bind("0.0.0.0", [], allow_remote=True)
    check_bind("127.0.0.1", [], allow_remote=False)


def test_threadkit_serve_command_refuses_remote_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    typer_testing = pytest.importorskip("typer.testing")
    from threadkit.cli import build_app

    monkeypatch.delenv("THREADKIT_SERVER_API_KEYS", raising=False)
    runner = typer_testing.CliRunner()
    result = runner.invoke(build_app(), ["serve", "--host", "0.0.0.0", "--port", "9"])
    assert result.exit_code == 2
    assert "refusing to serve on '0.0.0.0'" in " ".join(result.output.split())
    help_text = runner.invoke(build_app(), ["serve", "--help"]).output
    for option in ("--host", "--port", "--store", "--model", "--api-key", "--allow-remote"):
        assert option in help_text
    assert "--requires-action-timeout" in help_text


def test_main_refuses_remote_bind_without_keys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THREADKIT_SERVER_API_KEYS", raising=False)
    assert main(["--host", "0.0.0.0", "--port", "9"]) == 2
    assert "refusing to serve on '0.0.0.0'" in capsys.readouterr().err


def test_resolve_config_overrides_and_validates() -> None:
    cfg = resolve_config(
        {"store": "memory://"},
        store="sqlite:///x.db",
        model="openai:gpt-4o-mini",
        requires_action_timeout=5,
    )
    assert (cfg.store, cfg.model, cfg.requires_action_timeout) == (
        "sqlite:///x.db",
        "openai:gpt-4o-mini",
        5.0,
    )
    with pytest.raises(ConfigError) as info:
        resolve_config({"store": "memory://"}, model="claude")
    assert info.value.key == "model"
    with pytest.raises(ConfigError):
        resolve_config({"store": "memory://"}, requires_action_timeout=0)


def test_parser() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "8123",
            "--store",
            "sqlite:///a.db",
            "--model",
            "offline",
            "--api-key",
            "a",
            "--api-key",
            "b",
            "--requires-action-timeout",
            "30",
            "--allow-remote",
        ]
    )
    assert (args.host, args.port, args.store, args.model) == (
        "127.0.0.1",
        8123,
        "sqlite:///a.db",
        "offline",
    )
    assert args.api_keys == ["a", "b"]
    assert args.requires_action_timeout == 30.0 and args.allow_remote


def test_missing_server_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {k: v for k, v in sys.modules.items() if k.startswith("threadkit.server")}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)
    try:
        with pytest.raises(MissingExtraError, match=r'pip install "threadkit\[server\]"'):
            importlib.import_module("threadkit.server")
    finally:
        for name in [k for k in sys.modules if k.startswith("threadkit.server")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ENTRY_POINTS = {
    "python -m threadkit.server": ["-m", "threadkit.server"],
    "threadkit serve": ["-c", "from threadkit.cli import main; main()", "serve"],
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_point_serves(entry: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "THREADKIT_SERVER_API_KEYS": "envkey"}
    proc = subprocess.Popen(
        [
            sys.executable,
            *ENTRY_POINTS[entry],
            "--port",
            str(port),
            "--store",
            f"sqlite:///{tmp_path / 'cli.db'}",
            "--api-key",
            "argkey",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/assistants"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(url, headers={"OpenAI-Beta": "assistants=v2"})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert r.status_code == 401
        for key in ("argkey", "envkey"):
            ok = httpx.get(url, headers={"OpenAI-Beta": "assistants=v2", "api-key": key})
            assert ok.status_code == 200 and ok.json()["object"] == "list"
    finally:
        proc.terminate()
        proc.wait(10)
    assert (tmp_path / "cli.db").exists()
