"""The verdict table and JSON that `preflight check` and `preflight status` print.

Both commands end in one `Outcome`: the verdict of every requirement, what was not
judged and why, plus where the verdicts come from. This module turns it into the
exit code (DESIGN.md §4: 0 pass, 1 worst is a warning, 2 something fails, 3 nothing
fails but something is unknown), the aligned table (rich: colour on a terminal, none
when piped or with NO_COLOR) and the JSON document whose schema docs/usage.md
describes (`schema` names its version; fields are only ever added).

rich is imported here and in the command modules only; the agent and the collector
never import it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

SCHEMA = "preflight.verdicts/v1"
STATUSES = ("pass", "warn", "fail", "unknown")
EXIT_PASS, EXIT_WARN, EXIT_FAIL, EXIT_UNKNOWN = 0, 1, 2, 3
# Exit code 3 doubles as "bad usage or config" (the monitoring-plugin convention).
EXIT_USAGE = EXIT_UNKNOWN
STYLES = {
    "pass": "bold green",
    "warn": "bold yellow",
    "fail": "bold red",
    "unknown": "bold magenta",
}
# How many node / target names a table cell lists before "and N more".
CELL_LIMIT = 6
# Width when the output is not a terminal (a file, a pipe, CI logs): wide enough that
# reasons wrap inside their column rather than squeezing every column.
PIPE_WIDTH = 160
REASON_WIDTH = 88
INVOLVED_WIDTH = 44


@dataclass(frozen=True)
class Row:
    requirement: str
    status: str
    reason: str
    nodes: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "status": self.status,
            "reason": self.reason,
            "nodes": list(self.nodes),
            "targets": list(self.targets),
        }


@dataclass
class Outcome:
    """Everything one run of `check` or `status` found."""

    command: str  # "check" or "status"
    profile: str
    generated_at: float
    rows: list[Row]
    # Where the verdicts come from: {"node": ...} for check, {"collector": url} for status.
    source: dict[str, Any]
    kubernetes: dict[str, Any]
    ready: dict[str, bool] = field(default_factory=dict)
    # (requirement, why) for requirements this command does not judge.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # What the run could not do (root-only reads as a normal user, probe failures).
    notes: list[str] = field(default_factory=list)
    # check only: the node's own report (protobuf JSON mapping), for support.
    report: dict[str, Any] | None = None

    @property
    def worst(self) -> str:
        return worst([r.status for r in self.rows])

    @property
    def exit_code(self) -> int:
        return exit_code([r.status for r in self.rows])


def worst(statuses: list[str]) -> str:
    """fail beats unknown beats warn beats pass (the order of the exit codes' meaning)."""
    for status in ("fail", "unknown", "warn"):
        if status in statuses:
            return status
    return "pass" if statuses else "unknown"


def exit_code(statuses: list[str]) -> int:
    return {"pass": EXIT_PASS, "warn": EXIT_WARN, "fail": EXIT_FAIL, "unknown": EXIT_UNKNOWN}[
        worst(statuses)
    ]


def to_json(outcome: Outcome) -> str:
    counts = {s: sum(1 for r in outcome.rows if r.status == s) for s in STATUSES}
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "command": outcome.command,
        "generated_at": outcome.generated_at,
        "profile": outcome.profile,
        "source": outcome.source,
        "kubernetes": outcome.kubernetes,
        "worst": outcome.worst,
        "exit_code": outcome.exit_code,
        "counts": counts,
        "ready": outcome.ready,
        "requirements": [r.as_json() for r in outcome.rows],
        "skipped": [{"requirement": r, "reason": why} for r, why in outcome.skipped],
        "notes": list(outcome.notes),
    }
    if outcome.report is not None:
        document["report"] = outcome.report
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _listed(label: str, items: tuple[str, ...]) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:CELL_LIMIT])
    if len(items) > CELL_LIMIT:
        shown += f" and {len(items) - CELL_LIMIT} more"
    return f"{label}: {shown}"


def console_for(stream: IO[str], *, plain: bool = False) -> Console:
    """A Console on `stream`: colour only on a terminal and without NO_COLOR (rich's rule)."""
    terminal = stream.isatty() and not plain
    width = None if terminal else int(os.environ.get("COLUMNS") or PIPE_WIDTH)
    return Console(
        file=stream,
        force_terminal=terminal,
        no_color=plain or bool(os.environ.get("NO_COLOR")) or not terminal,
        width=width,
        highlight=False,
        soft_wrap=False,
    )


def render_table(outcome: Outcome, console: Console) -> None:
    """The aligned table, then what was skipped, notes, and the one-line summary."""
    subject = ", ".join(f"{k} {v}" for k, v in outcome.source.items())
    kube = outcome.kubernetes
    if kube.get("available"):
        kube_text = f"Kubernetes {kube.get('server_version') or '?'}"
    else:
        kube_text = f"Kubernetes: {kube.get('error') or 'not read'}"
    console.print(
        Text(f"preflight {outcome.command} · profile {outcome.profile} · {subject} · {kube_text}")
    )
    table = Table(box=box.SIMPLE_HEAD, show_lines=False, pad_edge=False, expand=False)
    table.add_column("requirement", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("reason", overflow="fold", max_width=REASON_WIDTH)
    table.add_column("nodes / targets", overflow="fold", max_width=INVOLVED_WIDTH)
    for row in outcome.rows:
        involved = "\n".join(
            part for part in (_listed("nodes", row.nodes), _listed("targets", row.targets)) if part
        )
        table.add_row(
            Text(row.requirement),
            Text(row.status.upper(), style=STYLES.get(row.status, "")),
            Text(row.reason),
            Text(involved or "—"),
        )
    console.print(table)
    for requirement, why in outcome.skipped:
        console.print(Text(f"not judged here: {requirement} — {why}"))
    for note in outcome.notes:
        console.print(Text(f"note: {note}"))
    counts = ", ".join(
        f"{n} {s}" for s in STATUSES if (n := sum(1 for r in outcome.rows if r.status == s))
    )
    summary = Text("result: ")
    summary.append(outcome.worst.upper(), style=STYLES.get(outcome.worst, ""))
    summary.append(f" ({counts or 'no requirement judged'}) · exit {outcome.exit_code}")
    console.print(summary)


def table_text(outcome: Outcome) -> str:
    """The table as plain text (no colour), e.g. for --output FILE."""
    import io

    buffer = io.StringIO()
    render_table(outcome, console_for(buffer, plain=True))
    return buffer.getvalue()
