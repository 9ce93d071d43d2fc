"""`keel simulate`: realistic traffic and feedback through the running platform's gateway."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from keel.cli import app, fail, load


class Split(StrEnum):
    seen = "seen"
    held_out = "held_out"
    all = "all"


class Switch(StrEnum):
    on = "on"
    off = "off"


@app.command()
def simulate(
    rate: Annotated[float, typer.Option("--rate", help="Requests per second (Poisson arrivals).")] = 0.5,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of traffic.")] = 60.0,
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            help="JSONL: kind (domain|chat|out_of_scope), lang, question, reference, split (seen|held_out).",
        ),
    ] = None,
    split: Annotated[
        Split,
        typer.Option(
            "--split",
            help="seen: the traffic that feeds training; held_out: questions kept for measuring; all: both.",
        ),
    ] = Split.seen,
    judge: Annotated[
        Switch,
        typer.Option(
            "--judge",
            help="on: score answers against their reference (chrF) and react by the documented user model; "
            "off: fixed feedback rates whatever the answer.",
        ),
    ] = Switch.on,
    seed: Annotated[int | None, typer.Option("--seed", help="Repeatable choices.")] = None,
    tag: Annotated[
        str, typer.Option("--tag", help="Name prefix of the API key the traffic goes out under.")
    ] = "simulate",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer asked for.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Send domain questions, small talk and out-of-scope questions (zh and en) through the gateway and leave
    feedback (thumbs, edits from reference answers, regenerations), under a key tagged `simulate-...`.
    With --judge on, each domain answer is scored against its reference and the score sets the feedback
    (platform/keel/simulate/users.py)."""
    from keel.cli.client import AdminClient, running_platform
    from keel.simulate.traffic import Behaviour, Simulator, dumps, load_questions, simulate, summary_text

    if rate <= 0 or duration <= 0:
        raise fail("--rate and --duration must be positive")
    settings = load()
    qs = load_questions(questions, split.value)  # a bad file fails before a key is made
    live = running_platform(settings)
    if live is None:
        raise fail("no running platform for this data dir: start it with `keel up` first")
    url, admin_key = live
    name = f"{tag}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    key = AdminClient(url, admin_key).call("POST", "/admin/keys", json={"name": name, "role": "user"})["key"]
    typer.echo(
        f"simulating {rate}/s for {duration:g} s with {len(qs)} {split.value} questions as {name!r} "
        f"(judge {judge.value})",
        err=True,
    )
    behaviour = Behaviour(max_tokens=max_tokens, judge=judge == Switch.on)
    sim = Simulator(url, key, qs, behaviour, seed=seed)
    out = simulate(sim, name, rate, duration, split.value)
    typer.echo(dumps(out) if as_json else summary_text(out))
