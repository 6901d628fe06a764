"""An audit export of a conversation, with the blocking API (``threadkit.sync``).

``thread.export()`` returns a JSON-ready record: the thread, every message (oldest first), every
run (oldest first) with its steps: tool calls with arguments and outputs, usage in tokens,
timestamps, status and last_error. Written to a file here and summarised.

Run offline: ``python samples/05_export_audit.py [OUT.json]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from threadkit import Agent
from threadkit import sync as threadkit


def clock() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "audit.json"
    agent = Agent(id="agent_auditor", name="auditor", instructions="Use the clock for the time.")
    with threadkit.open_backend() as backend:
        thread = backend.create_thread(metadata={"case": "audit-sample"})
        thread.add_message("user", "My order number is 1187.")
        thread.run(agent)
        thread.add_message("user", "What time is it?")
        thread.run(agent, functions=[clock])
        record = thread.export()

    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"export written to {out}")
    print(f"thread {record['thread']['id']}: {len(record['messages'])} messages")
    for run in record["runs"]:
        usage = run["usage"] or {}
        print(
            f"  run {run['id']} agent={run['agent_id']} status={run['status']} "
            f"model={run['model']} tokens={usage.get('total_tokens', 0)}"
        )
        for step in run["steps"]:
            for call in step["step_details"].get("tool_calls", []):
                fn = call["function"]
                print(f"    tool call {fn['name']}({fn['arguments']}) -> {fn['output']}")


if __name__ == "__main__":
    main()
