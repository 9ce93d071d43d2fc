"""Where the test suite's time goes: per-module totals (setup + call + teardown) from pytest's
`--durations=0` output, and, given a second output, the change per module.

    python3 -m pytest -q --durations=0 > before.txt     # one run
    python3 -m pytest -q --durations=0 > after.txt      # the other, same machine, nothing else running
    python bench/suite_durations.py before.txt after.txt
    python bench/suite_durations.py before.txt after.txt --common   # only tests both runs have

`--common` compares like with like when the second run has new tests: the total over the test ids that
appear in both outputs (a session fixture's start is charged to whichever test used it first, so a
module that moved its fixture can shift seconds between tests; the total over all common tests is the
figure to read).
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


def per_test(text: str) -> Counter:
    """Seconds per test id (setup + call + teardown)."""
    tests: Counter = Counter()
    for line in text.splitlines():
        if m := LINE.match(line):
            tests[m.group(3)] += float(m.group(1))
    return tests


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
    common: Annotated[bool, typer.Option("--common", help="Only the test ids both runs have.")] = False,
) -> None:
    if not 1 <= len(runs) <= 2:
        raise typer.BadParameter("give one pytest output, or two to compare")
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in runs]
    if common:
        if len(runs) != 2:
            raise typer.BadParameter("--common compares two outputs")
        a, b = (per_test(t) for t in texts)
        both = set(a) & set(b)
        print(f"{len(both)} tests in both ({len(a)} and {len(b)} timed)")
        mods_a, mods_b = Counter(), Counter()
        for t in both:
            mods_a[t.split("::")[0]] += a[t]
            mods_b[t.split("::")[0]] += b[t]
        for n in sorted(set(mods_a), key=lambda n: -max(mods_a[n], mods_b[n]))[:top]:
            print(f"{mods_a[n]:7.1f}  {mods_b[n]:7.1f}  {mods_b[n] - mods_a[n]:+7.1f}  {n}")
        ta, tb = sum(a[t] for t in both), sum(b[t] for t in both)
        print(f"common tests: {ta:.0f} s -> {tb:.0f} s ({tb / ta:.3f}x)")
        return
    parsed = [per_module(t) for t in texts]
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
