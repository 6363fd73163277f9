"""What the CLI prints: rich tables for people, JSON for scripts (``--json``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

Column = tuple[str, Callable[[dict[str, Any]], Any]]


@dataclass
class Output:
    """Where and how to print: ``json`` for scripts, else tables on the terminal."""

    json: bool = False
    out: Console | None = None
    err: Console | None = None

    def __post_init__(self) -> None:
        # soft_wrap off and a wide width when not a terminal: a pipe gets whole lines
        wide = None if sys.stdout.isatty() else 200
        self.out = self.out or Console(highlight=False, width=wide, soft_wrap=True)
        self.err = self.err or Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def stdout(self) -> Console:
        assert self.out is not None
        return self.out

    @property
    def stderr(self) -> Console:
        assert self.err is not None
        return self.err

    def data(self, value: Any) -> None:
        """``value`` as JSON on stdout (one document)."""
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def line(self, value: Any) -> None:
        """``value`` as one line of JSON (a stream of events: one per line)."""
        sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def show(self, renderable: Any) -> None:
        """Print a table; into a pipe or file without the padding after each line."""
        if self.stdout.is_terminal:
            self.stdout.print(renderable)
            return
        with self.stdout.capture() as captured:
            self.stdout.print(renderable)
        sys.stdout.write("".join(line.rstrip() + "\n"
                                 for line in captured.get().splitlines()))
        sys.stdout.flush()

    def table(self, rows: Iterable[dict[str, Any]], columns: Sequence[Column],
              empty: str = "none") -> None:
        rows = list(rows)
        if self.json:
            self.data(rows)
            return
        if not rows:
            self.stderr.print(f"[dim]({empty})[/dim]")
            return
        t = Table(box=None, pad_edge=False, header_style="bold")
        for title, _ in columns:
            t.add_column(title, overflow="fold")
        for row in rows:
            t.add_row(*(escape(text(get(row))) for _, get in columns))
        self.show(t)

    def record(self, value: dict[str, Any], keys: Sequence[str] | None = None) -> None:
        """One object: JSON, or its fields one per line."""
        if self.json:
            self.data(value)
            return
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        for k in keys or list(value):
            if k in value:
                t.add_row(escape(k), escape(text(value[k])))
        self.show(t)

    def done(self, message: str, value: Any = None) -> None:
        """A change made: the answer as JSON, or a sentence for people."""
        if self.json:
            self.data(value if value is not None else {})
        else:
            self.stdout.print(escape(message))

    def note(self, message: str) -> None:
        """For people only, on stderr (never in the way of a pipe)."""
        if not self.json:
            self.stderr.print(f"[dim]{escape(message)}[/dim]")

    def warn(self, message: str) -> None:
        self.stderr.print(f"[yellow]kimchi: warning:[/yellow] {escape(message)}")


def text(value: Any) -> str:
    """A cell: scalars as they are, lists joined, objects as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(text(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def size(n: Any) -> str:
    """Bytes for people (1.5 GiB)."""
    if not isinstance(n, int | float):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def when(iso: Any) -> str:
    """An ISO-8601 time, shortened for a table (seconds, no zone when UTC)."""
    if not isinstance(iso, str):
        return "-"
    t = iso.replace("T", " ")
    if "." in t:
        t = t.split(".")[0] + ("Z" if t.endswith("Z") else "")
    return t.removesuffix("+00:00").removesuffix("Z")
