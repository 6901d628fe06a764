"""Every sample in ``samples/`` runs offline, exits 0 and prints what it promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

# sample file -> patterns its output must contain (re.search, in order of appearance)
EXPECTED: dict[str, list[str]] = {
    "01_multi_turn.py": [
        r"assistant: Noted: your name is Ada; your favourite colour is teal\.",
        r"assistant: Your favourite colour is teal\.",
        r"assistant: Your name is Ada\.",
        r"\n\s+6 assistant Your name is Ada\.",
    ],
    "02_tools.py": [
        r"run run_\w+: requires_action",
        r"tool call calculator\(\{'expression': '12 \* \(3 \+ 4\)'\}\) -> 84\n",
        r"tool call clock\(\{\}\) -> \d{4}-\d\d-\d\dT",
        r"run run_\w+: completed",
        r"assistant: calculator returned 84\. clock returned",
        r"assistant: calculator returned 7006652\.",
        r"\s+8 tool\s+result 7006652",
    ],
    "03_suspend_resume.py": [
        r"\[process (\d+)\] 2 messages; snapshot: ",
        r"\[process (\d+)\] resumed thread thread_\w+ with 2 messages",
        r"assistant: Your favourite colour is teal\.",
        r"history intact: 2 messages before, 4 after",
    ],
    "04_swap_backend_config.py": [
        r"chat backend, .*store memory://\)",
        r"assistant: calculator returned 42\.",
        r"assistant: Your favourite number is 42\.",
        r"chat backend, .*store sqlite:///",
        r"assistants backend, .*on threadkit serve",
        r"foundry backend, .*on threadkit serve",
        r"responses backend, .*on threadkit serve",
        r"foundry-agents backend, .*on threadkit serve",
        r"same transcript under all 6 configuration\(s\): True",
    ],
    "05_export_audit.py": [
        r"export written to ",
        r"thread thread_\w+: 6 messages",
        r"agent=agent_auditor status=completed model=offline",
        r"tool call clock\(\{\}\) -> \d{4}-",
    ],
    "06_agent_framework.py": [
        r"\nassistant: Noted: your name is Ada; your favourite colour is teal\.",
        r"\[new agent, same session\] assistant: Your favourite colour is teal\.",
        r"thread thread_[0-9a-f]{32}: 4 messages",
        r"exported session sample-\w+: 4 messages",
        r"imported into memory://: thread thread_[0-9a-f]{32} with 4 messages",
        r"\[agent-framework in-memory session\] assistant: Your name is Ada\.",
    ],
    "09_assistants.py": [
        r"threadkit serve on http://127\.0\.0\.1:\d+/v1",
        r"thread thread_\w+ created on the Assistants endpoint",
        r"run run_\w+: completed, agent asst_\w+",
        r"steps \['tool_calls', 'message_creation'\]",
        r"assistant: calculator returned 84\.",
        r"snapshot: \d+ bytes, no credentials",
        r"resumed thread thread_\w+: 6 messages",
        r"assistant: Your name is Ada\.",
    ],
    "07_foundry_classic.py": [
        r"threadkit serve on http://127\.0\.0\.1:\d+/api/projects/demo",
        r"thread thread_\w+ created",
        r"assistant: Noted: your name is Ada",
        r"run run_\w+: completed \(\d+ tokens\)",
        r"tool call calculator\(.*\) -> 84",
        r"assistant: calculator returned 84\.",
        r"resumed thread thread_\w+ from a \d+-byte snapshot",
        r"assistant: Your name is Ada\.",
        r"threads tagged sample=07: 1",
        r"deleted: True",
    ],
    "08_responses.py": [
        r"threadkit serve on http://127\.0\.0\.1:\d+",
        r"\[chain\] assistant: Noted: your name is Ada\.",
        r"\[chain\] run (run_\w+): requires_action",
        r"\[chain\]   tool call calculator\(\{'expression': '12 \* \(3 \+ 4\)'\}\) -> 84",
        r"\[chain\] run run_\w+: completed over 2 responses",
        r"\[chain\] assistant: calculator returned 84\.",
        r"\[chain\] run steps: \['tool_calls', 'message_creation'\]",
        r"\[conversation\] thread conv_\w+",
        r"\[conversation\] resumed; assistant: Your favourite colour is teal\.",
        r"\[conversation\] 4 items: user assistant user assistant",
        r"\[store\] assistant: Your name is Grace\.",
        r"\[store\] 4 messages kept by threadkit, none by the service",
        r"\[foundry-agents\] agent sample-08:1: completed",
        r"\[foundry-agents\] assistant: calculator returned 42\.",
        r"\[foundry-agents\] deleted: True",
    ],
}


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("THREADKIT_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
    return env


def _run(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_every_sample_is_covered() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_runs_offline(name: str, tmp_path: Path) -> None:
    proc = _run(name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    pos = 0
    for pattern in EXPECTED[name]:
        found = re.compile(pattern).search(proc.stdout, pos)
        assert found, f"{name}: {pattern!r} not found after offset {pos} in:\n{proc.stdout}"
        pos = found.end()


def test_suspend_resume_sample_uses_two_processes(tmp_path: Path) -> None:
    proc = _run("03_suspend_resume.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pids = set(re.findall(r"\[process (\d+)\]", proc.stdout))
    assert len(pids) == 2


def test_swap_sample_takes_a_config_from_argv(tmp_path: Path) -> None:
    db = tmp_path / "given.db"
    proc = _run("04_swap_backend_config.py", json.dumps({"store": f"sqlite:///{db}"}), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"store sqlite:///{db})" in proc.stdout
    assert "same transcript under all 1 configuration(s): True" in proc.stdout
    toml = tmp_path / "threadkit.toml"
    toml.write_text('[threadkit]\nstore = "memory://named"\n', encoding="utf-8")
    proc = _run("04_swap_backend_config.py", str(toml), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "store memory://named)" in proc.stdout


def test_export_sample_writes_the_audit_record(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    proc = _run("05_export_audit.py", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["format"] == "threadkit.export"
    assert [m["role"] for m in record["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert [r["status"] for r in record["runs"]] == ["completed", "completed"]
