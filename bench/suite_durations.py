"""Where the test suite's time goes: per-module totals (setup + call + teardown) from pytest's
`--durations=0` output, and, given a second output, the change per module.

    python3 -m pytest -q --durations=0 > before.txt     # one run
    python3 -m pytest -q --durations=0 > after.txt      # the other, same machine, nothing else running
    python bench/suite_durations.py before.txt after.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

LINE = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(\S+)")
WALL = re.compile(r" in ([\d.]+)s \(")


def per_module(text: str) -> tuple[Counter, float | None]:
    """Seconds per test module, and the wall time pytest reported for the session."""
    modules: Counter = Counter()
    for line in text.splitlines():
        if m := LINE.match(line):
            modules[m.group(3).split("::")[0]] += float(m.group(1))
    wall = WALL.findall(text)
    return modules, float(wall[-1]) if wall else None


def main(
    runs: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="pytest outputs")],
    top: int = 25,
) -> None:
    if not 1 <= len(runs) <= 2:
        raise typer.BadParameter("give one pytest output, or two to compare")
    parsed = [per_module(p.read_text(encoding="utf-8", errors="replace")) for p in runs]
    for p, (mods, _) in zip(runs, parsed, strict=True):
        if not mods:
            sys.exit(f"error: {p}: no durations found (run pytest with --durations=0)")
    first = parsed[0][0]
    last = parsed[-1][0]
    names = sorted(set(first) | set(last), key=lambda n: -max(first.get(n, 0), last.get(n, 0)))[:top]
    for n in names:
        cells = "  ".join(f"{mods.get(n, 0.0):7.1f}" for mods, _ in parsed)
        delta = f"  {last.get(n, 0.0) - first.get(n, 0.0):+7.1f}" if len(parsed) == 2 else ""
        print(f"{cells}{delta}  {n}")
    for p, (mods, wall) in zip(runs, parsed, strict=True):
        print(f"{p}: {sum(mods.values()):.0f} s in durations, pytest wall {wall or 0:.0f} s")


if __name__ == "__main__":
    typer.run(main)
