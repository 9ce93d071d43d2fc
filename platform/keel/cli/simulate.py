"""`keel simulate`: realistic traffic and feedback through the running platform's gateway."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from keel.cli import app, fail, load


@app.command()
def simulate(
    rate: Annotated[float, typer.Option("--rate", help="Requests per second (Poisson arrivals).")] = 0.5,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of traffic.")] = 60.0,
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions", help="JSONL: kind (domain|chat|out_of_scope), lang, question, reference."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Repeatable choices.")] = None,
    tag: Annotated[
        str, typer.Option("--tag", help="Name prefix of the API key the traffic goes out under.")
    ] = "simulate",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer asked for.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Send domain questions, small talk and out-of-scope questions (zh and en) through the gateway and leave
    feedback (thumbs, edits from reference answers, regenerations), under a key tagged `simulate-...`."""
    from keel.cli.client import AdminClient, running_platform
    from keel.simulate.traffic import Behaviour, dumps, load_questions, simulate, summary_text

    if rate <= 0 or duration <= 0:
        raise fail("--rate and --duration must be positive")
    settings = load()
    qs = load_questions(questions)  # a bad file fails before a key is made
    live = running_platform(settings)
    if live is None:
        raise fail("no running platform for this data dir: start it with `keel up` first")
    url, admin_key = live
    name = f"{tag}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    key = AdminClient(url, admin_key).call("POST", "/admin/keys", json={"name": name, "role": "user"})["key"]
    typer.echo(f"simulating {rate}/s for {duration:g} s with {len(qs)} questions as {name!r}", err=True)
    out = simulate(url, key, name, rate, duration, questions, seed, Behaviour(max_tokens=max_tokens))
    typer.echo(dumps(out) if as_json else summary_text(out))
