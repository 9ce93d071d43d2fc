"""How the CLI prints tables: whole cells, on a terminal and in a pipe alike."""

from __future__ import annotations

from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def print_table(table: Any) -> None:
    """Print a rich Table. Long cells wrap (fold) instead of being cut to "…"; when stdout is not a
    terminal (a pipe, a file, CI) the table is printed at its natural width, so every cell stays whole
    on one line for grep and scripts (rich would otherwise squeeze it into 80 columns)."""
    from rich.console import Console

    for col in table.columns:
        col.overflow = "fold"
    out = Console()
    if not out.is_terminal:
        natural = Console(width=100_000).measure(table).maximum
        out = Console(width=max(80, natural))
    out.print(table)
