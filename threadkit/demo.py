"""The ``threadkit demo``: what threadkit does, end to end, in a few seconds.

Four scenarios on one thread, printed with rich:

1. a multi-turn conversation whose later answers depend on earlier turns (context retention);
2. tool calls through ``requires_action`` → ``submit_tool_outputs`` (a calculator and a clock),
   step by step with ``create_run`` / ``wait_run``, then the one-liner ``thread.run(agent,
   functions=[...])``;
3. the thread serialized to a snapshot file and resumed in a NEW process
   (``python -m threadkit resume FILE --say ...``), which continues the conversation; back here
   the history is checked intact;
4. the run evidence table and an audit export of the conversation to JSON.

With no configuration and no credentials it uses SQLite in a work directory and the offline
:class:`~threadkit.testing.scripted.ScriptedModel`; with ``OPENAI_API_KEY`` set (and optionally
``OPENAI_BASE_URL``) it uses ``openai:gpt-4o-mini``; ``--config``/``--model``/``THREADKIT_*``
choose anything else. The tools :func:`calculator` and :func:`clock` are shared with
``threadkit chat`` and ``threadkit resume``.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import threadkit
from threadkit.config import Config, load_config
from threadkit.errors import ThreadkitError
from threadkit.thread import AgentThread
from threadkit.tools import FunctionRegistry, function_tool
from threadkit.types import Agent, Run, RunStatus

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "AGENT",
    "DEFAULT_OPENAI_MODEL",
    "DemoResult",
    "calculator",
    "clock",
    "demo_config",
    "run_demo",
]

DEFAULT_OPENAI_MODEL = "openai:gpt-4o-mini"
"""The model the demo uses when ``OPENAI_API_KEY`` is set and nothing else names one."""

AGENT = Agent(
    id="agent_threadkit_demo",
    name="threadkit demo",
    instructions=(
        "You are a concise assistant. Use the calculator tool for arithmetic and the clock "
        "tool for the current time. Answer in one or two short sentences."
    ),
)
"""The agent of the demo, ``threadkit chat`` and ``threadkit resume``."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large (at most 100)")
        return _BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:40]}")


def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression exactly (no variables, no function calls).

    Args:
        expression: numbers with + - * / // % ** and parentheses, e.g. "12 * (3 + 4)".

    Returns:
        The value (an int when the expression stays in integers).

    Raises:
        ValueError: anything but arithmetic, or an exponent above 100.
        ZeroDivisionError: division by zero.
    """
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    return _evaluate(tree)


def clock() -> str:
    """The current date and time in UTC, ISO 8601 (e.g. "2025-01-31T12:00:00+00:00")."""
    return datetime.now(UTC).isoformat(timespec="seconds")


TOOLS = [function_tool(calculator), function_tool(clock)]


@dataclass
class DemoResult:
    """What a demo run produced (for callers and tests).

    Attributes:
        thread_id: the demo thread.
        snapshot_path: the snapshot file the new process resumed.
        export_path: the audit JSON export.
        messages_before: messages in the thread when it was serialized.
        messages_after: messages after the new process continued it.
        seconds: wall time of the whole demo.
    """

    thread_id: str
    snapshot_path: Path
    export_path: Path
    messages_before: int
    messages_after: int
    seconds: float


def _toml_keys(path: str | os.PathLike[str]) -> set[str]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    table = raw.get("threadkit", raw)
    return set(table) if isinstance(table, dict) else set()


def demo_config(
    *,
    workdir: Path,
    config_path: Path | None = None,
    store: str | None = None,
    model: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The demo's configuration.

    The store is ``store``, else the one a config file or ``THREADKIT_STORE`` names, else
    SQLite at ``workdir/threadkit.db``. The model is ``model``, else the one a config file or
    ``THREADKIT_MODEL`` names, else ``openai:gpt-4o-mini`` when the API key variable
    (``OPENAI_API_KEY``) is set (with ``OPENAI_BASE_URL`` as ``base_url``), else ``offline``.

    Args:
        workdir: the demo's work directory.
        config_path: ``--config`` (None: ``THREADKIT_CONFIG`` and ``THREADKIT_*`` variables).
        store: ``--store``.
        model: ``--model``.
        environ: the environment (default ``os.environ``).

    Raises:
        ConfigError: an invalid file, variable or option.
    """
    env = os.environ if environ is None else environ
    if config_path is not None:
        base = load_config(config_path)
        given = _toml_keys(config_path)
    else:
        base = load_config(None, environ=env)
        file = env.get("THREADKIT_CONFIG")
        given = _toml_keys(file) if file else set()
        given |= {k for k in Config.__struct_fields__ if env.get(f"THREADKIT_{k.upper()}")}
    data = base.to_dict()
    if store:
        data["store"] = store
    elif "store" not in given:
        data["store"] = f"sqlite:///{(workdir / 'threadkit.db').resolve()}"
    if model:
        data["model"] = model
    elif "model" not in given and env.get(base.api_key_env):
        data["model"] = DEFAULT_OPENAI_MODEL
        if not data.get("base_url") and env.get("OPENAI_BASE_URL"):
            data["base_url"] = env["OPENAI_BASE_URL"]
    return load_config(data)


class _Printer:
    """The demo's rich output helpers."""

    def __init__(self, console: Console) -> None:
        from rich.markup import escape

        self.console = console
        self.escape = escape

    def heading(self, text: str) -> None:
        self.console.print()
        self.console.rule(f"[bold cyan]{text}")

    def say(self, role: str, text: str) -> None:
        style = {"user": "bold blue", "assistant": "bold green"}.get(role, "bold")
        self.console.print(f"  [{style}]{role}>[/] {self.escape(text)}")

    def info(self, text: str) -> None:
        self.console.print(f"  [dim]{self.escape(text)}[/]")

    def ok(self, text: str) -> None:
        self.console.print(f"  [bold green]✓[/] {self.escape(text)}")

    def step(self, call: str, result: str) -> None:
        self.console.print(f"  [magenta]{self.escape(call)}[/] → {self.escape(result)}")


async def _turn(p: _Printer, thread: AgentThread, text: str, **run_kw: Any) -> Run:
    """One user turn with ``thread.run``; prints the reply (and tool traffic)."""
    sent = await thread.add_message("user", text)
    p.say("user", text)
    run = await thread.run(AGENT, **run_kw)
    async for m in thread.messages(after=sent.id):
        for call in m.tool_calls:
            p.info(f"tool call {call.name}({call.arguments})")
        for r in m.tool_results:
            p.info(f"tool output {r.output}")
        if m.role == "assistant" and m.text:
            p.say("assistant", m.text)
    tokens = run.usage.total_tokens if run.usage else 0
    p.info(f"run {run.id}: {run.status.value}, {tokens} tokens")
    return run


async def _last_answer(thread: AgentThread) -> str:
    async for m in thread.messages("desc"):
        if m.role == "assistant" and m.text:
            return m.text
    return ""


async def _scenario_memory(p: _Printer, thread: AgentThread) -> None:
    p.heading("1. Multi-turn conversation: later answers depend on earlier turns")
    await _turn(p, thread, "Hi! My name is Ada and my favourite colour is teal.")
    await _turn(p, thread, "What is my favourite colour?")
    answer = await _last_answer(thread)
    if "teal" in answer.lower():
        p.ok("Context retained: the answer recalls 'teal' from the first turn.")
    else:
        p.info("(the model did not repeat the colour; see the answer above)")


async def _scenario_tools(p: _Printer, thread: AgentThread) -> None:
    p.heading("2. Tool calls: requires_action → submit_tool_outputs")
    question = "What is 12 * (3 + 4), and what time is it?"
    await thread.add_message("user", question)
    p.say("user", question)
    registry = FunctionRegistry([calculator, clock])
    run = await thread.create_run(AGENT, tools=TOOLS)
    p.step("thread.create_run(agent, tools=[calculator, clock])", f"{run.id} {run.status.value}")
    run = await thread.wait_run(run.id)
    p.step("thread.wait_run(run.id)", run.status.value)
    while run.status is RunStatus.REQUIRES_ACTION and run.required_action is not None:
        calls = run.required_action.submit_tool_outputs.tool_calls
        p.info(f"the run stopped at requires_action, waiting for {len(calls)} tool output(s):")
        for c in calls:
            p.info(f"  {c.id}: {c.function.name}({c.function.arguments})")
        outputs = []
        for c in calls:
            out = await registry.execute(c)
            p.step(f"  demo executes {c.function.name}", out.output)
            outputs.append(out)
        run = await thread.submit_tool_outputs(run.id, outputs)
        p.step(f"thread.submit_tool_outputs(run.id, {len(outputs)} outputs)", run.status.value)
        run = await thread.wait_run(run.id)
        p.step("thread.wait_run(run.id)", run.status.value)
    p.say("assistant", await _last_answer(thread))
    p.console.print()
    p.info("The same in one line: thread.run(agent, functions=[calculator, clock]) executes the")
    p.info("tool calls itself and submits the outputs until the run ends.")
    run = await _turn(p, thread, "What is 1234 * 5678?", functions=[calculator, clock])
    if run.status is RunStatus.COMPLETED:
        p.ok("Both runs completed with the tool outputs in the thread.")


async def _suspend(
    p: _Printer, thread: AgentThread, workdir: Path
) -> tuple[Path, list[tuple[str, str]]]:
    p.heading("3. Suspend, then resume in a new process")
    blob = await thread.serialize()
    path = workdir / "thread.snapshot.json"
    path.write_bytes(blob)
    snap = json.loads(blob)
    before = [(m.id, m.text) async for m in thread.messages()]
    p.step("thread.serialize()", f"{len(blob)} bytes written to {path}")
    p.info(
        f"snapshot: format {snap['format']} v{snap['version']}, backend {snap['backend']}, "
        f"store {snap['store']}, {snap['message_count']} messages (never credentials)"
    )
    return path, before


def _resume_elsewhere(p: _Printer, path: Path, workdir: Path) -> None:
    say = "What is my name?"
    cmd = [sys.executable, "-m", "threadkit", "resume", str(path), "--say", say]
    p.info(
        f"$ python -m threadkit resume {path.name} --say {say!r}   (process {os.getpid()} waits)"
    )
    env = dict(os.environ)
    root = str(Path(threadkit.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (root, env.get("PYTHONPATH")) if x)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=120, check=False, cwd=workdir
    )
    for line in proc.stdout.rstrip().splitlines():
        p.console.print(f"  [yellow]│[/] {p.escape(line)}")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ThreadkitError(f"the resumed process failed (exit {proc.returncode}): {last}")


async def _scenario_audit(p: _Printer, thread: AgentThread, workdir: Path) -> Path:
    from threadkit.cli import run_evidence, runs_table

    p.heading("4. Evidence: every run, and an audit export")
    evidence = [await run_evidence(thread, r) async for r in thread.runs(order="asc")]
    p.console.print(runs_table(evidence, title=f"runs of thread {thread.id}, oldest first"))
    record = await thread.export()
    path = workdir / "export.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    calls = sum(len(ev["tool_calls"]) for ev in evidence)
    tokens = sum((ev["usage"] or {}).get("total_tokens", 0) for ev in evidence)
    p.ok(
        f"Export written to {path}: {len(record['messages'])} messages, "
        f"{len(record['runs'])} runs, {calls} tool calls, {tokens} tokens."
    )
    return path


async def run_demo(cfg: Config, *, workdir: Path, console: Console) -> DemoResult:
    """Run the four demo scenarios on one new thread, printing to ``console``.

    Args:
        cfg: the configuration (see :func:`demo_config`).
        workdir: where ``thread.snapshot.json`` and ``export.json`` are written (and the
            SQLite database, by default).
        console: a rich console.

    Returns:
        What was produced (:class:`DemoResult`).

    Raises:
        ThreadkitError: any threadkit error (a store that cannot open, a model that fails,
            the resumed process failing...).
    """
    started = time.perf_counter()
    p = _Printer(console)
    real = cfg.model != "offline"
    console.rule("[bold]threadkit demo")
    p.info(f"store:          {cfg.store}")
    p.info(
        f"model:          {cfg.model}"
        + ("" if real else " (a scripted model; set OPENAI_API_KEY to use a real one)")
    )
    p.info(f"work directory: {workdir}")
    backend = await threadkit.open_backend(cfg)
    resumed: AgentThread | None = None
    try:
        thread = await backend.create_thread(metadata={"source": "threadkit demo"})
        p.info(f"thread:         {thread.id}")
        await _scenario_memory(p, thread)
        await _scenario_tools(p, thread)
        path, before = await _suspend(p, thread, workdir)
        count_before = len(before)
        shared = not cfg.store.startswith("memory://")
        if shared:
            # Suspended: nothing of this process is needed to continue the thread.
            await backend.close()
            p.step("backend.close()", "this process holds nothing of the thread now")
        _resume_elsewhere(p, path, workdir)
        if shared:
            resumed = await threadkit.resume(path.read_bytes())
            p.step("threadkit.resume(snapshot)", f"thread {resumed.id} reopened here")
        else:
            resumed = thread
            p.info(
                "(memory:// store: the new process continued its own copy, carried inline in "
                "the snapshot; use SQLite, Redis or PostgreSQL to share one thread)"
            )
        after = [(m.id, m.text) async for m in resumed.messages()]
        if after[: len(before)] != before:
            raise ThreadkitError("history changed while the thread was suspended")
        p.ok(
            f"History intact: {count_before} messages before the new process, {len(after)} "
            f"after; the first {count_before} are unchanged."
        )
        if shared:
            p.say("assistant", await _last_answer(resumed))
            p.info("(that answer was written by the other process)")
        export_path = await _scenario_audit(p, resumed, workdir)
    finally:
        if resumed is not None:
            await resumed.close()
        await backend.close()
    seconds = time.perf_counter() - started
    console.print()
    p.ok(f"Demo finished in {seconds:.1f} s.")
    if shared:
        p.info("Look around:")
        p.info(f"  threadkit --store {cfg.store} threads show {thread.id}")
        p.info(f"  threadkit --store {cfg.store} runs list {thread.id}")
    return DemoResult(
        thread_id=thread.id,
        snapshot_path=path,
        export_path=export_path,
        messages_before=count_before,
        messages_after=len(after),
        seconds=seconds,
    )
