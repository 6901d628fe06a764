"""The ``threadkit`` command line (the ``cli`` extra: Typer and rich).

Typer and rich are optional, so nothing here imports them at module level: :func:`main` checks
they are installed (and prints ``pip install "threadkit[cli]"`` when not), then
:func:`build_app` builds the Typer application from the commands registered with
:func:`command`. Commands are plain (sync or async) functions whose parameters are declared
``Annotated[..., typer.Option(...)]``; the annotations stay strings until the app is built, when
``typer`` is bound in this module. Adding a command is one decorated function::

    @command("stats", group="threads")
    async def threads_stats(
        ctx: typer.Context,
        limit: Annotated[int, typer.Option(help="At most this many threads.")] = 100,
    ) -> None:
        async with cli_backend(ctx) as backend:
            ...

Groups (sub-commands) are listed in :data:`GROUPS`: ``threads``, ``runs`` and ``store``.

Global options (before the command): ``--config PATH`` (a ``threadkit.toml``), ``--store URL``,
``--model offline|openai:<model>``. Without them the ``THREADKIT_*`` environment variables and
``THREADKIT_CONFIG`` apply (see :mod:`threadkit.config`).

Errors of the :class:`~threadkit.errors.ThreadkitError` tree are printed as one red line on
stderr, without a traceback; the exit code is 2 for a :class:`~threadkit.errors.ConfigError`
(and for usage errors), 1 for every other error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import msgspec

from threadkit._api import open_backend
from threadkit._api import resume as resume_thread
from threadkit._extras import require
from threadkit.config import Config, load_config
from threadkit.errors import ConfigError, MissingExtraError, ThreadkitError
from threadkit.snapshot import decode_snapshot
from threadkit.thread import AgentThread, ThreadBackend
from threadkit.types import (
    Message,
    Run,
    RunStatus,
    TextContent,
    ThreadInfo,
    ToolCallContent,
    ToolCallsDetails,
    ToolResultContent,
)

if TYPE_CHECKING:
    import typer
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "GROUPS",
    "CliState",
    "build_app",
    "cli_backend",
    "cli_store",
    "command",
    "describe_message",
    "iso",
    "main",
    "make_console",
    "run_evidence",
    "runs_table",
]

F = TypeVar("F", bound=Callable[..., Any])

GROUPS: dict[str, str] = {
    "threads": "List, show, export and delete threads in a store.",
    "runs": "Run evidence: status, timestamps, tool calls, usage and errors of runs.",
    "store": "Inspect and set up message stores.",
}
"""Sub-command groups: name → help text. Register a command in one with ``group=``."""


@dataclass(frozen=True)
class _Command:
    fn: Callable[..., Any]
    name: str
    group: str | None
    help: str | None


_COMMANDS: list[_Command] = []


def command(name: str, *, group: str | None = None, help: str | None = None) -> Callable[[F], F]:
    """Register a function as a CLI command (the app is built later, by :func:`build_app`).

    The function may be ``async`` (it is run with :func:`asyncio.run`). ThreadkitError
    exceptions it raises become one red line and exit code 1 (2 for ConfigError).

    Args:
        name: the command name (``"list"``, ``"serve"``...).
        group: a key of :data:`GROUPS` for a sub-command, None for a top-level command.
        help: the help text (default: the function's docstring).

    Returns:
        A decorator that records the function and returns it unchanged.

    Raises:
        ValueError: an unknown group, or a command of that name already in the group.
    """

    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown command group {group!r} (known: {', '.join(GROUPS)})")

    def register(fn: F) -> F:
        if any(c.name == name and c.group == group for c in _COMMANDS):
            raise ValueError(f"command {name!r} is already registered in group {group!r}")
        _COMMANDS.append(_Command(fn, name, group, help))
        return fn

    return register


# --------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class CliState:
    """The global options of one invocation (``ctx.obj`` of every command).

    Attributes:
        config_path: ``--config``: a ``threadkit.toml`` (None: ``THREADKIT_*`` environment).
        store: ``--store``: a store URL overriding the configuration's.
        model: ``--model``: ``offline`` or ``openai:<model>``, overriding the configuration's.
    """

    config_path: Path | None = None
    store: str | None = None
    model: str | None = None

    @property
    def explicit(self) -> bool:
        """Whether any global option was given."""
        return bool(self.config_path or self.store or self.model)

    def config(self, *, store: str | None = None, model: str | None = None) -> Config:
        """The configuration: the file (or environment), then the global options, then these.

        Raises:
            ConfigError: the file, a variable or an option is invalid.
        """
        base = load_config(self.config_path) if self.config_path else load_config(None)
        overrides = {
            k: v for k, v in (("store", store or self.store), ("model", model or self.model)) if v
        }
        if not overrides:
            return base
        return load_config({**base.to_dict(), **overrides})


def _state(ctx: typer.Context) -> CliState:
    obj = ctx.obj
    return obj if isinstance(obj, CliState) else CliState()


@contextlib.asynccontextmanager
async def cli_backend(
    ctx: typer.Context, *, store: str | None = None, model: str | None = None
) -> AsyncIterator[ThreadBackend]:
    """Open the backend of the invocation's configuration; close it on exit.

    Warns on stderr when the store is ``memory://`` (nothing persists between commands).

    Raises:
        ConfigError, MissingExtraError, StoreError: as :func:`threadkit.open_backend`.
    """
    cfg = _state(ctx).config(store=store, model=model)
    if cfg.store.startswith("memory://"):
        _note(
            "note: the store is memory:// (nothing persists between commands); pass "
            "--store sqlite:///threadkit.db or set THREADKIT_STORE"
        )
    backend = await open_backend(cfg)
    try:
        yield backend
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def cli_store(ctx: typer.Context, *, store: str | None = None) -> AsyncIterator[Any]:
    """Open and set up the store of the invocation's configuration (``store`` overrides it);
    close it on exit. For commands that work on a store itself, not through a backend.

    Warns on stderr when the store is ``memory://`` (nothing persists between commands).

    Raises:
        ConfigError, MissingExtraError: a bad store URL or a missing extra.
        StoreError: the store cannot be reached or set up.
    """
    from threadkit.registry import open_store

    url = _state(ctx).config(store=store).store
    if url.startswith("memory://"):
        _note("note: the store is memory:// (nothing persists between commands)")
    opened = open_store(url)
    try:
        await opened.setup()
        yield opened
    finally:
        await opened.close()


def _note(text: str) -> None:
    import typer

    typer.secho(text, err=True, dim=True)


def make_console() -> Console:
    """A rich console on stdout; 160 columns wide when stdout is not a terminal (no COLUMNS).

    Wide output keeps ids on one line when piped or captured.
    """
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=160)
    return console


def iso(ts: int | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2025-01-31T12:00:00Z``); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def describe_message(m: Message) -> str:
    """One message as text: its text parts, ``→ name(arguments)`` per tool call and
    ``← output`` per tool result (other parts by type), one per line."""
    lines: list[str] = []
    for p in m.content:
        if isinstance(p, TextContent):
            lines.append(p.text)
        elif isinstance(p, ToolCallContent):
            lines.append(f"→ {p.name}({p.arguments})  [{p.id}]")
        elif isinstance(p, ToolResultContent):
            mark = " (error)" if p.is_error else ""
            lines.append(f"← {p.output}{mark}  [{p.tool_call_id}]")
        else:
            lines.append(f"<{type(p).__name__}>")
    return "\n".join(lines)


async def run_evidence(thread: AgentThread, run: Run) -> dict[str, Any]:
    """The operator's record of one run, JSON-ready.

    Returns:
        ``thread_id``, ``run_id``, ``agent_id``, ``status``, ``model``; ``created_at``,
        ``started_at``, ``completed_at``, ``failed_at``, ``cancelled_at``, ``expires_at`` as
        ISO 8601 UTC strings (or None); ``tool_calls`` (oldest first, from the run steps: ``id``,
        ``name``, ``arguments`` JSON text, ``output`` or None while unanswered, ``step_id``);
        ``usage`` (``prompt_tokens``, ``completion_tokens``, ``total_tokens``, or None);
        ``last_error`` (``code``, ``message``, or None); ``incomplete_details`` (``reason``, or
        None); ``steps`` (the number of run steps).

    Raises:
        RunNotFoundError: the run is not on the thread.
    """
    steps = [s async for s in thread.run_steps(run.id)]
    calls: list[dict[str, Any]] = []
    for s in steps:
        if isinstance(s.step_details, ToolCallsDetails):
            for c in s.step_details.tool_calls:
                calls.append(
                    {
                        "id": c.id,
                        "name": c.function.name,
                        "arguments": c.function.arguments,
                        "output": c.function.output,
                        "step_id": s.id,
                    }
                )
    return {
        "thread_id": run.thread_id,
        "run_id": run.id,
        "agent_id": run.agent_id,
        "status": run.status.value,
        "model": run.model,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "completed_at": iso(run.completed_at),
        "failed_at": iso(run.failed_at),
        "cancelled_at": iso(run.cancelled_at),
        "expires_at": iso(run.expires_at),
        "tool_calls": calls,
        "usage": msgspec.to_builtins(run.usage) if run.usage else None,
        "last_error": msgspec.to_builtins(run.last_error) if run.last_error else None,
        "incomplete_details": (
            msgspec.to_builtins(run.incomplete_details) if run.incomplete_details else None
        ),
        "steps": len(steps),
    }


def _ended(ev: Mapping[str, Any]) -> str:
    for key in ("completed_at", "failed_at", "cancelled_at"):
        if ev.get(key):
            return str(ev[key])
    if ev.get("expires_at") and ev["status"] in (
        RunStatus.QUEUED.value,
        RunStatus.IN_PROGRESS.value,
        RunStatus.REQUIRES_ACTION.value,
        RunStatus.CANCELLING.value,
    ):
        return f"expires {ev['expires_at']}"
    return "-"


def runs_table(evidence: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A rich table of run evidence (from :func:`run_evidence`), one row per run, in order.

    Columns: run, agent (in the caption when every run has the same one), status, model,
    created and ended (ISO 8601 UTC; completed, failed or cancelled time, or when an active run
    expires), tool calls, tokens (prompt/completion/total) and, when any run has one, the
    error (``last_error`` or ``incomplete_details``).
    """
    from rich.markup import escape
    from rich.table import Table

    agents = {ev.get("agent_id") or "-" for ev in evidence}
    one_agent = len(agents) == 1
    problems = [
        f"{ev['last_error']['code']}: {ev['last_error']['message']}"
        if ev.get("last_error")
        else (
            f"incomplete: {ev['incomplete_details']['reason']}"
            if ev.get("incomplete_details")
            else ""
        )
        for ev in evidence
    ]
    caption = f"agent: {escape(next(iter(agents)))}" if one_agent and evidence else None
    table = Table(title=title, caption=caption)
    table.add_column("run", no_wrap=True)
    if not one_agent:
        table.add_column("agent", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("ended (UTC)", no_wrap=True)
    table.add_column("tool calls", min_width=10)
    table.add_column("tokens p/c/total", no_wrap=True, justify="right")
    if any(problems):
        table.add_column("error", min_width=10)
    for ev, problem in zip(evidence, problems, strict=True):
        usage = ev.get("usage")
        tokens = (
            f"{usage['prompt_tokens']}/{usage['completion_tokens']}/{usage['total_tokens']}"
            if usage
            else "-"
        )
        row = [ev["run_id"]]
        if not one_agent:
            row.append(escape(ev.get("agent_id") or "-"))
        row += [
            ev["status"],
            escape(ev.get("model") or "-"),
            ev["created_at"] or "-",
            _ended(ev),
            escape(", ".join(c["name"] for c in ev["tool_calls"]) or "-"),
            tokens,
        ]
        if any(problems):
            row.append(escape(problem))
        table.add_row(*row)
    return table


def _echo_json(data: Any) -> None:
    import typer

    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _fail(exc: BaseException, code: int) -> NoReturn:
    import typer

    text = " ".join(str(exc).split()) or type(exc).__name__
    typer.secho(f"Error: {text} ({type(exc).__name__})", fg="red", err=True)
    raise typer.Exit(code)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            return result
        except ConfigError as exc:
            _fail(exc, 2)
        except ThreadkitError as exc:
            _fail(exc, 1)

    return wrapper


# --------------------------------------------------------------------------- the app


def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A threadkit.toml (default: THREADKIT_CONFIG and THREADKIT_* variables).",
            dir_okay=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Store URL: memory://, sqlite:///threadkit.db, redis://..., postgresql://...",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="offline (default) or openai:<model>.")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", help="Print the threadkit version and exit.")
    ] = False,
) -> None:
    """threadkit: one AgentThread API over every agent-conversation backend."""
    import typer

    if version:
        from threadkit import __version__

        typer.echo(f"threadkit {__version__}")
        raise typer.Exit(0)
    ctx.obj = CliState(config_path=config, store=store, model=model)


def build_app() -> typer.Typer:
    """Build the Typer application from every registered command.

    Returns:
        The app; call it (``app()``) or test it with ``typer.testing.CliRunner``.

    Raises:
        MissingExtraError: Typer or rich is not installed (``pip install "threadkit[cli]"``).
    """
    typer_module = require("typer", "cli", "the threadkit command line")
    require("rich", "cli", "the threadkit command line")
    # Command annotations are strings naming ``typer``; Typer evaluates them in this module.
    globals()["typer"] = typer_module
    app = typer_module.Typer(
        name="threadkit",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback(invoke_without_command=True)(_root)
    subs: dict[str, Any] = {}
    for name, text in GROUPS.items():
        sub = typer_module.Typer(help=text, no_args_is_help=True)
        app.add_typer(sub, name=name)
        subs[name] = sub
    for cmd in _COMMANDS:
        target = app if cmd.group is None else subs[cmd.group]
        target.command(cmd.name, help=cmd.help)(_guarded(cmd.fn))
    return app  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> None:
    """The ``threadkit`` console script.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Exits with 1 and one line naming ``pip install "threadkit[cli]"`` when the ``cli`` extra
    is not installed.
    """
    try:
        app = build_app()
    except MissingExtraError as exc:
        print(f"threadkit: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    app(args=list(argv) if argv is not None else None, prog_name="threadkit")


# --------------------------------------------------------------------------- demo


@command("demo")
async def demo_command(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store URL (default: SQLite in the work directory)."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            help="Where the database, snapshot and export go (default: a new temp directory).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Run the demo: multi-turn memory, tool calls, resume in a new process, audit.

    Offline (a scripted model, SQLite in a temp directory) unless OPENAI_API_KEY, --model or a
    config names a real model.
    """
    import tempfile

    from threadkit.demo import demo_config, run_demo

    state = _state(ctx)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="threadkit-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(
        workdir=workdir,
        config_path=state.config_path,
        store=store or state.store,
        model=state.model,
    )
    await run_demo(cfg, workdir=workdir, console=make_console())


# --------------------------------------------------------------------------- chat


def _print_reply(console: Console, messages: Sequence[Message]) -> None:
    from rich.markup import escape

    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            for call in m.tool_calls:
                console.print(
                    f"  [dim]tool call → {escape(call.name)}({escape(call.arguments)})[/]"
                )
        if m.role == "tool":
            for r in m.tool_results:
                console.print(f"  [dim]tool output ← {escape(r.output)}[/]")
        if m.role == "assistant" and m.text:
            console.print(f"[bold green]assistant>[/] {escape(m.text)}")


@command("chat")
async def chat_command(
    ctx: typer.Context,
    thread_id: Annotated[
        str | None, typer.Option("--thread", help="Continue this thread (default: a new one).")
    ] = None,
) -> None:
    """Chat with the agent in a thread (offline model by default; calculator and clock).

    Type /exit (or end the input) to stop.
    """
    from threadkit.demo import AGENT, calculator, clock

    console = make_console()
    async with cli_backend(ctx) as backend:
        if thread_id:
            thread = await backend.get_thread(thread_id)
            info = await thread.info()
            console.print(f"Continuing thread {thread.id} ({info.message_count} messages).")
        else:
            thread = await backend.create_thread(metadata={"source": "threadkit chat"})
            console.print(f"New thread {thread.id}.")
        console.print("[dim]Type /exit or press Ctrl-D to stop.[/]")
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                console.print()
                break
            text = line.strip()
            if text in ("/exit", "/quit"):
                break
            if not text:
                continue
            sent = await thread.add_message("user", text)
            run = await thread.run(AGENT, functions=[calculator, clock])
            _print_reply(console, [m async for m in thread.messages(after=sent.id)])
            if run.status is not RunStatus.COMPLETED:
                why = run.last_error.message if run.last_error else ""
                console.print(f"[yellow]run {run.id} ended {run.status.value}[/] {why}")
        console.print(f"Thread {thread.id} has {(await thread.info()).message_count} messages.")


# --------------------------------------------------------------------------- resume


@command("resume")
async def resume_command(
    ctx: typer.Context,
    snapshot_file: Annotated[
        Path,
        typer.Argument(
            help="A snapshot written by thread.serialize().", exists=True, dir_okay=False
        ),
    ],
    say: Annotated[
        str | None, typer.Option("--say", help="Add this user message and run the agent.")
    ] = None,
) -> None:
    """Resume a thread from a snapshot file, optionally continue it, print the conversation.

    The snapshot names its backend and store; --config/--store/--model resume it under
    another configuration instead (which must name the same backend and store).
    """
    from rich.markup import escape

    from threadkit.demo import AGENT, calculator, clock

    state = _state(ctx)
    blob = snapshot_file.read_bytes()
    snapshot = decode_snapshot(blob)
    thread = await resume_thread(blob, state.config() if state.explicit else None)
    console = make_console()
    try:
        before = (await thread.info()).message_count
        console.print(
            f"Resumed thread {thread.id} in process {os.getpid()}: {before} messages "
            f"(the snapshot recorded {snapshot.message_count})."
        )
        if say:
            await thread.add_message("user", say)
            run = await thread.run(AGENT, functions=[calculator, clock])
            console.print(f"Run {run.id}: {run.status.value}.")
        async for m in thread.messages():
            text = describe_message(m).replace("\n", "\n" + " " * 16)
            console.print(f"  {m.seq:>3} {m.role:<9} {escape(text)}")
        after = (await thread.info()).message_count
        console.print(f"Thread {thread.id} now has {after} messages.")
    finally:
        await thread.close()


# --------------------------------------------------------------------------- threads


def _parse_metadata(pairs: Sequence[str]) -> dict[str, str]:
    import typer

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        out[key] = value
    return out


def _thread_record(info: ThreadInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
        "message_count": info.message_count,
        "metadata": info.metadata,
    }


@command("list", group="threads")
async def threads_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", help="Only threads with this KEY=VALUE (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List threads, newest first: id, created, updated, message count, metadata."""
    from rich.markup import escape
    from rich.table import Table

    wanted = _parse_metadata(metadata or [])
    async with cli_backend(ctx) as backend:
        infos = [i async for i in backend.list_threads(limit=limit, metadata=wanted or None)]
    records = [_thread_record(i) for i in infos]
    if as_json:
        _echo_json(records)
        return
    table = Table(title=f"{len(records)} thread(s), newest first")
    table.add_column("thread", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("updated (UTC)", no_wrap=True)
    table.add_column("messages", justify="right")
    table.add_column("metadata")
    for r in records:
        meta = ", ".join(f"{k}={v}" for k, v in r["metadata"].items())
        table.add_row(
            r["id"], r["created_at"], r["updated_at"], str(r["message_count"]), escape(meta)
        )
    make_console().print(table)


@command("show", group="threads")
async def threads_show(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a thread's messages, oldest first: seq, role, text, tool calls and results."""
    from rich.markup import escape
    from rich.table import Table

    async with cli_backend(ctx) as backend:
        thread = await backend.get_thread(thread_id)
        info = await thread.info()
        messages = [m async for m in thread.messages()]
    if as_json:
        _echo_json({"thread": _thread_record(info), "messages": msgspec.to_builtins(messages)})
        return
    meta = ", ".join(f"{k}={v}" for k, v in info.metadata.items()) or "no metadata"
    table = Table(
        title=f"thread {info.id}: {info.message_count} messages, created "
        f"{iso(info.created_at)}, {escape(meta)}"
    )
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("content")
    table.add_column("run", no_wrap=True)
    for m in messages:
        table.add_row(
            str(m.seq),
            m.role,
            iso(m.created_at) or "-",
            escape(describe_message(m)),
            m.run_id or "",
        )
    make_console().print(table)


@command("export", group="threads")
async def threads_export(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread id.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Export a thread as audit JSON: the thread, every message, every run with its steps."""
    async with cli_backend(ctx) as backend:
        thread = await backend.get_thread(thread_id)
        record = await thread.export()
    text = json.dumps(record, indent=2, ensure_ascii=False)
    if output is None:
        _echo_json(record)
        return
    output.write_text(text + "\n", encoding="utf-8")
    _note(f"wrote {output} ({len(record['messages'])} messages, {len(record['runs'])} runs)")


@command("delete", group="threads")
async def threads_delete(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a thread with its messages and runs (asks first unless --yes)."""
    import typer

    async with cli_backend(ctx) as backend:
        thread = await backend.get_thread(thread_id)
        info = await thread.info()
        if not yes:
            typer.confirm(
                f"Delete thread {info.id} and its {info.message_count} messages?", abort=True
            )
        deleted = await thread.delete()
    typer.echo(
        f"Deleted thread {thread_id}." if deleted else f"Thread {thread_id} was already gone."
    )


def _config_arg(value: str) -> Any:
    """A config given on the command line: inline JSON (``{"backend": ...}``) or a TOML path."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{value!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("an inline config must be a JSON object")
        return data
    return Path(value)


@command("copy", group="threads")
async def threads_copy(
    thread_id: Annotated[str, typer.Argument(help="The thread id on the source backend.")],
    source: Annotated[
        str,
        typer.Option("--from", help="Source config: a threadkit.toml path or inline JSON."),
    ],
    destination: Annotated[
        str,
        typer.Option("--to", help="Destination config: a threadkit.toml path or inline JSON."),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result (ids, mapping) as JSON.")
    ] = False,
) -> None:
    """Copy a thread to another backend: every message in order, tool calls kept paired.

    Prints the new thread id and how many messages were copied (with --json: the old → new
    message id mapping too). A destination that cannot hold some message is left unchanged.
    """
    import typer

    from threadkit.copy import copy_thread

    src_backend = await open_backend(_config_arg(source))
    try:
        dst_backend = await open_backend(_config_arg(destination))
        try:
            thread = await src_backend.get_thread(thread_id)
            result = await copy_thread(thread, dst_backend)
        finally:
            await dst_backend.close()
    finally:
        await src_backend.close()
    if as_json:
        _echo_json(
            {
                "source_thread_id": result.source_thread_id,
                "thread_id": result.thread.id,
                "backend": dst_backend.kind,
                "message_ids": result.message_ids,
            }
        )
        return
    typer.echo(
        f"Copied thread {thread_id} ({src_backend.kind}) to {result.thread.id} "
        f"({dst_backend.kind}): {len(result.message_ids)} messages."
    )


@command("prune", group="threads")
async def threads_prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete threads not updated for this long: 30d, 12h, 90m, 45s, 2w.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    store: Annotated[
        str | None, typer.Option("--store", help="Store URL (default: the configured store).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete threads last updated longer ago than --older-than, with their messages, runs
    and run steps (see threadkit.retention.prune_threads). Prints how many went."""
    import typer
    from rich.table import Table

    from threadkit.errors import ValidationError
    from threadkit.retention import parse_duration, prune_threads

    try:
        seconds = parse_duration(older_than)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    now = int(datetime.now(tz=UTC).timestamp())
    async with cli_store(ctx, store=store) as opened:
        infos = await prune_threads(opened, seconds, dry_run=dry_run, now=now)
    records = [_thread_record(i) for i in infos]
    cutoff = iso(now - seconds)
    if as_json:
        _echo_json(
            {
                "dry_run": dry_run,
                "updated_before": cutoff,
                "count": len(records),
                "threads": records,
            }
        )
        return
    if dry_run and records:
        table = Table(title=f"{len(records)} thread(s) would be deleted, oldest first")
        table.add_column("thread", no_wrap=True)
        table.add_column("created (UTC)", no_wrap=True)
        table.add_column("updated (UTC)", no_wrap=True)
        table.add_column("messages", justify="right")
        for r in records:
            table.add_row(r["id"], r["created_at"], r["updated_at"], str(r["message_count"]))
        make_console().print(table)
    verb = "Would delete" if dry_run else "Deleted"
    typer.echo(f"{verb} {len(records)} thread(s) last updated before {cutoff}.")


# --------------------------------------------------------------------------- runs


@command("list", group="runs")
async def runs_list(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread id.")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List a thread's runs, newest first: status, times, tool calls, usage, errors."""
    async with cli_backend(ctx) as backend:
        thread = await backend.get_thread(thread_id)
        evidence = [await run_evidence(thread, r) async for r in thread.runs(limit=limit)]
    if as_json:
        _echo_json(evidence)
        return
    make_console().print(
        runs_table(evidence, title=f"{len(evidence)} run(s) of thread {thread_id}, newest first")
    )


@command("show", group="runs")
async def runs_show(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread id.")],
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one run's evidence: ids, status, model, times, tool calls, usage, errors.

    Timestamps are ISO 8601 UTC; tool calls come from the run steps, with their arguments and
    outputs; then usage (tokens), last_error and incomplete_details.
    """
    from rich.markup import escape
    from rich.table import Table

    async with cli_backend(ctx) as backend:
        thread = await backend.get_thread(thread_id)
        run = await thread.get_run(run_id)
        ev = await run_evidence(thread, run)
    if as_json:
        _echo_json(ev)
        return
    console = make_console()
    table = Table(title=f"run {run_id}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    for key in (
        "thread_id",
        "run_id",
        "agent_id",
        "status",
        "model",
        "created_at",
        "started_at",
        "completed_at",
        "failed_at",
        "cancelled_at",
        "expires_at",
        "steps",
    ):
        value = ev[key]
        table.add_row(key, escape("-" if value is None else str(value)))
    usage = ev["usage"]
    table.add_row(
        "usage",
        (
            f"prompt {usage['prompt_tokens']}, completion {usage['completion_tokens']}, "
            f"total {usage['total_tokens']} tokens"
        )
        if usage
        else "-",
    )
    err = ev["last_error"]
    table.add_row("last_error", escape(f"{err['code']}: {err['message']}") if err else "-")
    inc = ev["incomplete_details"]
    table.add_row("incomplete_details", escape(inc["reason"]) if inc else "-")
    console.print(table)
    calls = Table(title=f"{len(ev['tool_calls'])} tool call(s)")
    calls.add_column("call", no_wrap=True)
    calls.add_column("function", no_wrap=True)
    calls.add_column("arguments")
    calls.add_column("output")
    for c in ev["tool_calls"]:
        calls.add_row(
            c["id"],
            escape(c["name"]),
            escape(c["arguments"]),
            escape(c["output"] if c["output"] is not None else "(no output yet)"),
        )
    console.print(calls)


# --------------------------------------------------------------------------- store


@command("info", group="store")
async def store_info(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the configuration in use (never secrets) and how many threads the store holds."""
    cfg = _state(ctx).config()
    async with cli_backend(ctx) as backend:
        count = 0
        async for _ in backend.list_threads():
            count += 1
        settings = backend.settings
    record = {
        "backend": cfg.backend,
        "store": settings.get("store", cfg.store),
        "model": cfg.model,
        "base_url": cfg.base_url,
        "api_key_env": cfg.api_key_env,
        "threads": count,
    }
    if as_json:
        _echo_json(record)
        return
    console = make_console()
    for key, value in record.items():
        console.print(f"{key:<12} {'-' if value is None else value}", markup=False)


@command("setup", group="store")
async def store_setup(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Argument(help="Store URL (default: --store or the configured store)."),
    ] = None,
) -> None:
    """Create or migrate the store's schema (store.setup(); idempotent).

    For PostgreSQL this is the explicit migration step: it applies the missing migrations
    in one transaction and records them in threadkit_migrations.
    """
    import typer

    async with cli_store(ctx, store=url) as opened:
        locator = opened.locator
    typer.echo(f"Store {locator} is set up.")


# --------------------------------------------------------------------------- serve


@command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (default 127.0.0.1, loopback only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Store URL, e.g. sqlite:///threadkit.db (default: config)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="offline or openai:<model> (default: config)."),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="An accepted API key (repeatable; also THREADKIT_SERVER_API_KEYS, "
            "comma-separated). Clients send it as 'Authorization: Bearer' or 'api-key'.",
        ),
    ] = None,
    requires_action_timeout: Annotated[
        float | None,
        typer.Option(
            "--requires-action-timeout",
            help="Seconds a run waits for tool outputs before it expires (default: config).",
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a non-loopback --host without API keys."),
    ] = False,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", help="Request body limit in bytes.")
    ] = 10 * 1024 * 1024,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the Assistants v2 (/v1), Foundry classic (/api/projects/{project}) and Chat
    Completions wire protocols over a store and chat model (needs the server extra)."""
    from threadkit.server.cli import env_api_keys, serve

    cfg = _state(ctx).config(store=store, model=model)
    serve(
        cfg,
        host=host,
        port=port,
        api_keys=[*(api_key or []), *env_api_keys()],
        requires_action_timeout=requires_action_timeout,
        allow_remote=allow_remote,
        max_body_bytes=max_body_bytes,
        log_level=log_level,
    )
