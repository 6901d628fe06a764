"""The ``threadkit`` command line: the demo end to end, every command, errors and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import threadkit
from threadkit import cli
from threadkit.demo import AGENT, calculator, clock, demo_config

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without credentials or THREADKIT_* settings (offline, defaults)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("THREADKIT_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("THREADKIT_") or k in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(k)


@pytest.fixture(scope="module")
def app() -> Any:
    return cli.build_app()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@dataclass
class Prepared:
    store: str
    talk: str  # a thread with a conversation, tool calls and runs
    other: str  # a second, newer thread with one message
    tool_run: str  # the run of "talk" that called the calculator
    snapshot: Path


async def _prepare(db: Path, snapshot: Path) -> Prepared:
    store = f"sqlite:///{db}"
    async with await threadkit.open_backend({"store": store}) as backend:
        talk = await backend.create_thread(metadata={"team": "red", "case": "1"})
        await talk.add_message("user", "My name is Ada and my favourite colour is teal.")
        await talk.run(AGENT)
        await talk.add_message("user", "What is 6 * 7?")
        tool_run = await talk.run(AGENT, functions=[calculator, clock])
        assert tool_run.status is threadkit.RunStatus.COMPLETED
        blob = await talk.serialize()
        other = await backend.create_thread(metadata={"team": "blue"})
        await other.add_message("user", "hello")
    await asyncio.to_thread(snapshot.write_bytes, blob)
    return Prepared(store, talk.id, other.id, tool_run.id, snapshot)


@pytest.fixture
def prepared(tmp_path: Path) -> Prepared:
    return asyncio.run(_prepare(tmp_path / "cli.db", tmp_path / "talk.snapshot.json"))


def _invoke(runner: CliRunner, app: Any, *args: str, **kw: Any) -> Any:
    return runner.invoke(app, list(args), **kw)


# --------------------------------------------------------------------------- demo


def test_demo_end_to_end_offline(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "threadkit", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "model:          offline" in out
    assert f"sqlite:///{workdir.resolve()}/threadkit.db" in out
    # 1. retention: the second answer recalls the colour told in the first turn
    assert "Your favourite colour is teal." in out
    # 2. requires_action, tool outputs executed by the demo and submitted, then the answer
    assert "thread.wait_run(run.id) → requires_action" in out
    assert "demo executes calculator → 84" in out
    assert re.search(r"demo executes clock → \d{4}-\d\d-\d\dT", out)
    assert "thread.submit_tool_outputs(run.id, 2 outputs)" in out
    assert "calculator returned 84." in out
    assert "calculator returned 7006652." in out  # the thread.run(functions=...) one-liner
    # 3. a different process resumed the snapshot and continued with the history intact
    waiting = re.search(r"\(process (\d+) waits\)", out)
    resumed = re.search(r"Resumed thread (thread_\w+) in process (\d+): (\d+) messages", out)
    assert waiting and resumed
    assert resumed.group(2) != waiting.group(1)
    assert "Your name is Ada." in out  # answered in the new process from the first turn
    intact = re.search(r"History intact: (\d+) messages before the new process, (\d+) after", out)
    assert intact
    before, after = int(intact.group(1)), int(intact.group(2))
    assert before == int(resumed.group(3)) and after == before + 2
    # 4. the evidence table and the export file
    assert "runs of thread" in out and "agent: agent_threadkit_demo" in out
    assert re.search(r"run_\w+ │ completed │ offline", out)
    export = workdir / "export.json"
    assert f"Export written to {export}" in out
    record = json.loads(export.read_text(encoding="utf-8"))
    assert record["format"] == "threadkit.export"
    assert record["thread"]["id"] == resumed.group(1)
    assert len(record["messages"]) == after
    assert len(record["runs"]) == 5
    outputs = [
        call["function"]["output"]
        for run in record["runs"]
        for step in run["steps"]
        for call in step["step_details"].get("tool_calls", [])
    ]
    assert "84" in outputs and "7006652" in outputs
    assert (workdir / "thread.snapshot.json").exists()


def test_demo_with_an_openai_key_uses_the_real_model_path(tmp_path: Path) -> None:
    """OPENAI_API_KEY + OPENAI_BASE_URL: the demo talks to an OpenAI-compatible endpoint (a
    scripted one on 127.0.0.1), in this process and in the resumed one."""
    from tests.chat_server import Reply, running_chat_server

    def call(cid: str, name: str, args: dict[str, str]) -> dict[str, str]:
        return {"id": cid, "name": name, "arguments": json.dumps(args)}

    with running_chat_server() as server:
        server.push(
            Reply(content="Nice to meet you, Ada."),
            Reply(content="Your favourite colour is teal."),
            Reply(
                tool_calls=[
                    call("call_a", "calculator", {"expression": "12 * (3 + 4)"}),
                    call("call_b", "clock", {}),
                ]
            ),
            Reply(content="It is 84, and the clock says it is morning."),
            Reply(tool_calls=[call("call_c", "calculator", {"expression": "1234 * 5678"})]),
            Reply(content="1234 * 5678 = 7006652."),
            Reply(content="Your name is Ada."),  # answered by the resumed process
        )
        env = _clean_env(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=server.base_url)
        proc = subprocess.run(
            [sys.executable, "-m", "threadkit", "demo", "--workdir", str(tmp_path / "d")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        requests = list(server.requests)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "model:          openai:gpt-4o-mini" in out
    assert "demo executes calculator → 84" in out
    assert "It is 84, and the clock says it is morning." in out
    assert "History intact: 13 messages before the new process, 15 after" in out
    assert len(requests) == 7
    assert {r["model"] for r in requests} == {"gpt-4o-mini"}
    # retention: the second request carried the first turn; the resumed process's request
    # carried the whole earlier conversation, tool results included
    second = json.dumps(requests[1]["messages"])
    assert "favourite colour is teal" in second
    last = requests[6]["messages"]
    assert any(m["role"] == "tool" and m["content"] == "7006652" for m in last)
    assert "What is my name?" in json.dumps(last[-1])


def test_demo_config_offline_defaults(tmp_path: Path) -> None:
    cfg = demo_config(workdir=tmp_path, environ={})
    assert cfg.model == "offline"
    assert cfg.store == f"sqlite:///{tmp_path.resolve()}/threadkit.db"


def test_demo_config_uses_openai_when_a_key_is_set(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    cfg = demo_config(workdir=tmp_path, environ=env)
    assert cfg.model == "openai:gpt-4o-mini"
    assert cfg.base_url == "http://127.0.0.1:9/v1"


def test_demo_config_respects_explicit_settings(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-test",
        "THREADKIT_MODEL": "offline",
        "THREADKIT_STORE": "memory://",
    }
    cfg = demo_config(workdir=tmp_path, environ=env)
    assert (cfg.model, cfg.store) == ("offline", "memory://")
    toml = tmp_path / "threadkit.toml"
    toml.write_text('[threadkit]\nstore = "memory://x"\n', encoding="utf-8")
    cfg = demo_config(workdir=tmp_path, config_path=toml, model="offline", environ={})
    assert (cfg.model, cfg.store) == ("offline", "memory://x")
    cfg = demo_config(workdir=tmp_path, store="sqlite:///elsewhere.db", environ={})
    assert cfg.store == "sqlite:///elsewhere.db"


# --------------------------------------------------------------------------- threads


def test_threads_list_newest_first_with_filters(
    runner: CliRunner, app: Any, prepared: Prepared
) -> None:
    res = _invoke(runner, app, "--store", prepared.store, "threads", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["id"] for r in rows] == [prepared.other, prepared.talk]
    talk = rows[1]
    assert talk["message_count"] == 6
    assert talk["metadata"] == {"team": "red", "case": "1"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", talk["created_at"])

    res = _invoke(
        runner,
        app,
        "--store",
        prepared.store,
        "threads",
        "list",
        "--json",
        "--metadata",
        "team=red",
    )
    assert [r["id"] for r in json.loads(res.stdout)] == [prepared.talk]
    res = _invoke(
        runner, app, "--store", prepared.store, "threads", "list", "--json", "--limit", "1"
    )
    assert [r["id"] for r in json.loads(res.stdout)] == [prepared.other]

    res = _invoke(runner, app, "--store", prepared.store, "threads", "list")
    assert res.exit_code == 0
    assert prepared.talk in res.stdout and prepared.other in res.stdout
    assert res.stdout.index(prepared.other) < res.stdout.index(prepared.talk)
    assert "team=red, case=1" in res.stdout

    res = _invoke(runner, app, "--store", prepared.store, "threads", "list", "--metadata", "oops")
    assert res.exit_code == 2


def test_threads_show_oldest_first_with_tool_calls(
    runner: CliRunner, app: Any, prepared: Prepared
) -> None:
    res = _invoke(runner, app, "--store", prepared.store, "threads", "show", prepared.talk)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert f"thread {prepared.talk}: 6 messages" in out
    assert out.index("My name is Ada") < out.index("What is 6 * 7?")
    assert '→ calculator({"expression": "6 * 7"})' in out
    assert "← 42" in out
    assert "calculator returned 42." in out

    res = _invoke(
        runner, app, "--store", prepared.store, "threads", "show", prepared.talk, "--json"
    )
    data = json.loads(res.stdout)
    assert [m["seq"] for m in data["messages"]] == [1, 2, 3, 4, 5, 6]
    assert [m["role"] for m in data["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


def test_threads_export_to_file_and_stdout(
    runner: CliRunner, app: Any, prepared: Prepared, tmp_path: Path
) -> None:
    out = tmp_path / "audit.json"
    res = _invoke(
        runner, app, "--store", prepared.store, "threads", "export", prepared.talk, "-o", str(out)
    )
    assert res.exit_code == 0, res.output
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["format"] == "threadkit.export"
    assert len(record["messages"]) == 6 and len(record["runs"]) == 2
    res = _invoke(runner, app, "--store", prepared.store, "threads", "export", prepared.talk)
    assert json.loads(res.stdout) == record


def test_threads_delete_asks_unless_yes(runner: CliRunner, app: Any, prepared: Prepared) -> None:
    base = ["--store", prepared.store, "threads"]
    res = runner.invoke(app, [*base, "delete", prepared.talk], input="n\n")
    assert res.exit_code == 1  # aborted
    assert "Delete thread" in res.output
    assert _invoke(runner, app, *base, "show", prepared.talk).exit_code == 0

    res = runner.invoke(app, [*base, "delete", prepared.talk], input="y\n")
    assert res.exit_code == 0 and f"Deleted thread {prepared.talk}." in res.stdout
    res = _invoke(runner, app, *base, "delete", prepared.other, "--yes")
    assert res.exit_code == 0
    res = _invoke(runner, app, *base, "list", "--json")
    assert json.loads(res.stdout) == []


# --------------------------------------------------------------------------- runs


def test_runs_list_and_show_json_evidence(runner: CliRunner, app: Any, prepared: Prepared) -> None:
    res = _invoke(runner, app, "--store", prepared.store, "runs", "list", prepared.talk, "--json")
    assert res.exit_code == 0, res.output
    runs = json.loads(res.stdout)
    assert len(runs) == 2
    assert runs[0]["run_id"] == prepared.tool_run  # newest first
    for ev in runs:
        assert ev["thread_id"] == prepared.talk
        assert ev["agent_id"] == "agent_threadkit_demo"
        assert ev["status"] == "completed" and ev["model"] == "offline"
        for key in ("created_at", "started_at", "completed_at"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ev[key])
        assert ev["failed_at"] is None and ev["cancelled_at"] is None
        usage = ev["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        assert ev["last_error"] is None and ev["incomplete_details"] is None
    assert runs[1]["tool_calls"] == []

    res = _invoke(
        runner,
        app,
        "--store",
        prepared.store,
        "runs",
        "show",
        prepared.talk,
        prepared.tool_run,
        "--json",
    )
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert ev["run_id"] == prepared.tool_run and ev["steps"] == 2
    [call] = ev["tool_calls"]
    assert call["name"] == "calculator"
    assert json.loads(call["arguments"]) == {"expression": "6 * 7"}
    assert call["output"] == "42"


def test_runs_tables(runner: CliRunner, app: Any, prepared: Prepared) -> None:
    res = _invoke(runner, app, "--store", prepared.store, "runs", "list", prepared.talk)
    assert res.exit_code == 0, res.output
    assert prepared.tool_run in res.stdout and "calculator" in res.stdout
    res = _invoke(
        runner, app, "--store", prepared.store, "runs", "show", prepared.talk, prepared.tool_run
    )
    assert res.exit_code == 0, res.output
    for text in ("agent_threadkit_demo", "completed_at", '{"expression": "6 * 7"}', "42", "tokens"):
        assert text in res.stdout


# --------------------------------------------------------------------------- resume, chat


def test_resume_continues_the_snapshot(runner: CliRunner, app: Any, prepared: Prepared) -> None:
    res = _invoke(runner, app, "resume", str(prepared.snapshot), "--say", "What is my name?")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert f"Resumed thread {prepared.talk} in process {os.getpid()}: 6 messages" in out
    assert "Your name is Ada." in out
    assert out.index("My name is Ada") < out.index("Your name is Ada.")
    assert f"Thread {prepared.talk} now has 8 messages." in out
    # without --say it only prints the conversation
    res = _invoke(runner, app, "resume", str(prepared.snapshot))
    assert res.exit_code == 0 and "now has 8 messages" in res.stdout


def test_resume_errors(runner: CliRunner, app: Any, prepared: Prepared, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else", "version": 1}', encoding="utf-8")
    res = _invoke(runner, app, "resume", str(bad))
    assert res.exit_code == 1
    assert res.stderr.strip().startswith("Error: not a threadkit thread snapshot")
    assert "SnapshotError" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    # another store than the snapshot's
    res = _invoke(runner, app, "--store", "memory://", "resume", str(prepared.snapshot))
    assert res.exit_code == 1 and "BackendMismatchError" in res.stderr
    res = _invoke(runner, app, "resume", str(tmp_path / "missing.json"))
    assert res.exit_code == 2


def test_chat_keeps_the_conversation(runner: CliRunner, app: Any, prepared: Prepared) -> None:
    lines = "My dog is Rex.\nWhat is 2 + 3 * 4?\nWhat time is it?\n\n/exit\nnever read\n"
    res = runner.invoke(app, ["--store", prepared.store, "chat"], input=lines)
    assert res.exit_code == 0, res.output
    out = res.stdout
    thread_id = re.search(r"New thread (thread_\w+)\.", out)
    assert thread_id
    assert "Noted: your dog is Rex." in out
    assert "calculator returned 14." in out
    assert "tool call → clock({})" in out
    assert f"Thread {thread_id.group(1)} has 10 messages." in out
    # a second session continues the same thread (EOF ends it)
    res = runner.invoke(
        app,
        ["--store", prepared.store, "chat", "--thread", thread_id.group(1)],
        input="What is my dog?\n",
    )
    assert res.exit_code == 0, res.output
    assert f"Continuing thread {thread_id.group(1)} (10 messages)" in res.stdout
    assert "Your dog is Rex." in res.stdout


# --------------------------------------------------------------------------- config, errors


def test_config_file_and_environment(
    runner: CliRunner, app: Any, prepared: Prepared, tmp_path: Path
) -> None:
    toml = tmp_path / "threadkit.toml"
    toml.write_text(f'[threadkit]\nstore = "{prepared.store}"\n', encoding="utf-8")
    res = _invoke(runner, app, "--config", str(toml), "threads", "list", "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 2
    res = runner.invoke(app, ["store", "info", "--json"], env={"THREADKIT_STORE": prepared.store})
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["threads"] == 2 and info["model"] == "offline"
    assert info["store"].startswith("sqlite:///")


@pytest.mark.parametrize("url", ["not-a-url", "nosuchscheme://x"])
def test_bad_store_url_is_one_line_exit_2(runner: CliRunner, app: Any, url: str) -> None:
    res = _invoke(runner, app, "--store", url, "threads", "list")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: config key 'store'") and "(ConfigError)" in lines[0]
    assert "Traceback" not in res.output


def test_bad_config_file_exit_2(runner: CliRunner, app: Any, tmp_path: Path) -> None:
    toml = tmp_path / "threadkit.toml"
    toml.write_text('[threadkit]\nstorage = "memory://"\n', encoding="utf-8")
    res = _invoke(runner, app, "--config", str(toml), "threads", "list")
    assert res.exit_code == 2
    assert "storage" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_missing_thread_is_one_line_exit_1(runner: CliRunner, app: Any, prepared: Prepared) -> None:
    for args in (
        ("threads", "show", "thread_missing"),
        ("threads", "export", "thread_missing"),
        ("threads", "delete", "thread_missing", "--yes"),
        ("runs", "list", "thread_missing"),
    ):
        res = _invoke(runner, app, "--store", prepared.store, *args)
        assert res.exit_code == 1, args
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "(ThreadNotFoundError)" in lines[0], args
    res = _invoke(runner, app, "--store", prepared.store, "runs", "show", prepared.talk, "run_nope")
    assert res.exit_code == 1 and "(RunNotFoundError)" in res.stderr


def test_memory_store_warns(runner: CliRunner, app: Any) -> None:
    res = _invoke(runner, app, "threads", "list", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == []
    assert "memory://" in res.stderr


def test_missing_cli_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['typer'] = None\nfrom threadkit.cli import main\nmain(['--help'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(), check=False
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert 'pip install "threadkit[cli]"' in lines[0]


def test_version_and_help(runner: CliRunner, app: Any) -> None:
    res = _invoke(runner, app, "--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"threadkit {threadkit.__version__}"
    res = _invoke(runner, app, "--help")
    for name in ("demo", "chat", "resume", "threads", "runs", "store"):
        assert name in res.stdout


# --------------------------------------------------------------------------- structure, tools


def test_command_registry_rejects_mistakes() -> None:
    with pytest.raises(ValueError, match="unknown command group"):
        cli.command("x", group="nope")
    with pytest.raises(ValueError, match="already registered"):
        cli.command("list", group="threads")(lambda: None)


def test_registered_commands_appear_in_a_rebuilt_app(runner: CliRunner) -> None:
    @cli.command("hello-test", group="store")
    async def hello(ctx: typer.Context) -> None:
        typer.echo(f"hello from {cli._state(ctx).config().store}")

    try:
        res = runner.invoke(cli.build_app(), ["--store", "memory://z", "store", "hello-test"])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip() == "hello from memory://z"
    finally:
        cli._COMMANDS[:] = [c for c in cli._COMMANDS if c.name != "hello-test"]


def test_calculator_is_arithmetic_only() -> None:
    assert calculator("12 * (3 + 4)") == 84
    assert calculator("7 / 2") == 3.5
    assert calculator("2 ^ 10") == 1024
    assert calculator("-3 + 1") == -2
    for bad in ("__import__('os')", "2 ** 1000", "x + 1", "True + 1", "1 +"):
        with pytest.raises(ValueError):
            calculator(bad)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", clock())
