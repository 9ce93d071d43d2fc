"""`keel lineage VERSION` and `keel lineage --request ID`: where a checkpoint came from, where a request went."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from keel.cli import app, fail, load
from keel.cli.output import JsonOpt


def _call(path: str) -> dict[str, Any]:
    from keel.cli.client import call

    return call(load(), "GET", path)[0]


def _version_text(d: dict[str, Any]) -> list[str]:
    champ = "  [champion]" if d["champion"] else ""
    out = [f"{d['version']}  stage {d['stage']}  status {d['status']}{champ}", f"  path {d['path']}"]
    c = d.get("cycle")
    out.append(f"  cycle {c['cycle_id']} ({c.get('status')}, {c.get('outcome')})" if c else "  cycle -")
    chain = " ← ".join(p["version"] for p in d["parents"]) or "-"
    out.append(f"  parents {chain}")
    for ds in d["datasets"]:
        line = f"  dataset {ds['kind']} {ds['hash'][:16]}"
        if "export_id" in ds:
            line += (
                f"  {ds['rows']} rows from {ds['requests']} requests ({ds['simulated_requests']} simulated), "
                f"{ds['feedback']} feedback; {ds['path']}"
            )
        out.append(line)
        if ds.get("request_ids"):
            more = ds["requests"] - len(ds["request_ids"])
            out.append(
                "    requests "
                + ", ".join(ds["request_ids"][:5])
                + (f" … (+{ds['requests'] - 5})" if ds["requests"] > 5 else "")
                + (f" ({more} not listed)" if more > 0 else "")
            )
    for g in d["gates"]:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[g.get("passed")]
        out.append(f"  gate {g['name']} vs {g['baseline']}: {verdict}  {g['path']}")
    for s in d["promotions"]:
        out.append(
            f"  {s['kind']} {s['from_version']} → {s['to_version']}  {s['status']}  {s['started_at']}  "
            f"by {s['by_whom']}" + (f"  ({s['reason']})" if s.get("reason") else "")
        )
    for m in d["champion_moves"]:
        out.append(f"  champion {m['from_version']} → {m['to_version']}  {m['kind']}  {m['moved_at']}")
    for c in d.get("canaries", []):
        out.append(
            f"  canary beside {c['champion']} on {c['share']:.0%}: {c['status']} after {c['n_candidate']} / "
            f"{c['n_champion']} requests  {c['reason'] or ''}".rstrip()
        )
    for w in d.get("watches", []):
        out.append(f"  watch vs {w['previous']}: {w['status']}  {w['reason'] or ''}".rstrip())
    return out


def _request_text(d: dict[str, Any]) -> list[str]:
    r = d["request"]
    tag = "  [simulated]" if r["simulated"] else ""
    out = [
        f"{r['request_id']}  {r['created_at']}  key {r['key_name']}{tag}  route {r['route']}  "
        f"served by {r['checkpoint_version']}  status {r['status_code']}"
    ]
    out += [
        f"  feedback {f['kind']} {f.get('rating') or ''} {f['feedback_id']}".rstrip() for f in d["feedback"]
    ]
    out += [f"  pair {p['pair_id']} ({p['source']}, {p['status']})" for p in d["pairs"]]
    out += [f"  sft example {e['example_id']} ({e['source']})" for e in d["sft_examples"]]
    out += [f"  kto example {e['example_id']} ({e['source']})" for e in d.get("kto_examples", [])]
    out += [f"  dataset {x['hash'][:16]} [{'+'.join(x['parts'])}] {x['path']}" for x in d["datasets"]]
    out += [
        f"  checkpoint {c['version']} ({c['stage']}, {c['status']}) trained on it" for c in d["checkpoints"]
    ]
    out += [
        f"  checkpoint {c['version']} ({c['stage']}, {c['status']}) descends from {c['parent']}"
        for c in d["descendants"]
    ]
    if len(out) == 1:
        out.append("  not used for training (yet)")
    return out


@app.command()
def lineage(
    version: Annotated[str | None, typer.Argument(help="A checkpoint version.")] = None,
    request: Annotated[str | None, typer.Option("--request", help="A request id (x-request-id).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a checkpoint came from (cycle, datasets, requests, parents, gates, promotions), or which
    datasets and checkpoints used a request."""
    from urllib.parse import quote

    if (version is None) == (request is None):
        raise fail("give a VERSION or --request ID (one of them)")
    d = _call(
        f"/admin/flywheel/lineage/requests/{quote(request, safe='')}"
        if request
        else f"/admin/flywheel/lineage/versions/{quote(version or '', safe='')}"
    )
    if as_json:
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    typer.echo("\n".join(_request_text(d) if request else _version_text(d)))
