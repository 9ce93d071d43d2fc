"""Mining and export against the platform's database (called by the admin API or the CLI)."""

from __future__ import annotations

import json
import uuid
import zlib
from collections import Counter
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.config import MiningConfig, TrustPolicy
from flywheel.mining import KtoItem, Miner, MiningHooks, PairItem, SftItem, kto_text
from flywheel.trust import auto_accept_rule, in_dpo_snapshot
from keel.store import flywheel
from keel.store.db import Database

if TYPE_CHECKING:
    from keel.config import KeelSettings
    from training.eval.config import EvalSettings


def mining_hooks(mining: MiningConfig, ev: EvalSettings) -> MiningHooks:
    """The training data pipeline's PII scrubber, dedup index and eval guard, passed in as callables."""
    from keel.cycle.eval_guard import build_guard
    from training.data.dedup import NearDupIndex
    from training.data.pii import Scrubber

    guard = build_guard(mining, ev)
    return MiningHooks(
        scrub=Scrubber().scrub,
        eval_overlap=guard.overlap if guard else None,
        dedup_index=NearDupIndex,
        eval_sets=dict(guard.sets) if guard else {},
    )


def reviews_needed(key: str, fraction: float) -> int:
    """Deterministic per pair: a `fraction` of pairs is reviewed twice."""
    return 2 if (zlib.crc32(key.encode()) % 10_000) < fraction * 10_000 else 1


def stored_row(item: PairItem | SftItem | KtoItem, id_column: str, run_id: str | None) -> dict[str, Any]:
    """A mined item as its table's row: a fresh id (``pair-…``, ``sft-…``, ``kto-…``), the item's fields
    (lists and dicts as JSON text, the way the tables store them) and the mining run."""
    prefix = {PairItem: "pair", SftItem: "sft", KtoItem: "kto"}[type(item)]
    row: dict[str, Any] = {id_column: f"{prefix}-{uuid.uuid4().hex[:16]}"}
    for f in fields(item):
        v = getattr(item, f.name)
        row[f.name] = json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
    row["mining_run"] = run_id
    return row


def pair_row(
    p: PairItem, run_id: str | None, fraction: float, trust: TrustPolicy | None = None
) -> dict[str, Any]:
    """A pairs-table row; the trust policy's acceptance is stored beside the review status (which stays
    pending: a reviewer may still decide, and that decision wins)."""
    rule = auto_accept_rule(p.source, trust) if trust is not None else None
    return {
        **stored_row(p, "pair_id", run_id),
        "status": "pending",
        "required_reviews": reviews_needed(p.pair_key, fraction),
        "auto_accepted_by": rule,
        "auto_accepted_at": datetime.now(UTC) if rule else None,
    }


def run_mining(
    db: Database, settings: KeelSettings, full: bool = False, hooks: MiningHooks | None = None
) -> dict[str, Any]:
    since = None if full else flywheel.last_mined_until(db)
    until = datetime.now(UTC)
    requests, feedback = flywheel.mining_window(db, since)
    known = flywheel.mined_keys(db)
    existing = [
        ("pair:" + k, f"{_prompt_text(p)}\n\x00{c}\n\x00{r}") for k, p, c, r in flywheel.stored_pairs(db)
    ]
    existing += [("sft:" + k, _prompt_text(m)) for k, m in flywheel.stored_sft(db)]
    existing += [
        ("kto:" + k, kto_text(json.loads(p) if isinstance(p, str) else p, c, bool(lab)))
        for k, p, c, lab in flywheel.stored_kto(db)
    ]
    miner = Miner(settings.mining, hooks or mining_hooks(settings.mining, settings.eval))
    result = miner.mine(requests, feedback, known, existing)
    run_id = "mine-" + until.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    frac = settings.annotation.double_annotate_fraction
    trust = settings.mining.trust
    flywheel.insert_pairs(db, [pair_row(p, run_id, frac, trust) for p in result.pairs])
    sft_rows = [stored_row(s, "example_id", run_id) for s in result.sft]
    stats = dict(result.stats)
    stats["pairs_auto_accepted"] = sum(auto_accept_rule(p.source, trust) is not None for p in result.pairs)
    stats["eval_guard"] = miner.hooks.eval_sets  # set → texts checked against ({}: the guard was off)
    kto_rows = [stored_row(k, "example_id", run_id) for k in result.kto]
    flywheel.record_mining_run(db, run_id, since, until, stats, sft_rows, kto_rows)
    return {
        "run_id": run_id,
        "since": since.isoformat() if since else None,
        "until": until.isoformat(),
        "stats": stats,
    }


def _prompt_text(messages: Any) -> str:
    from flywheel.text import prompt_text

    return prompt_text(json.loads(messages) if isinstance(messages, str) else messages)


def run_export(
    db: Database, settings: KeelSettings, out: str | None, include_unreviewed: bool = False
) -> dict[str, Any]:
    """Pairs that train (reviewed and accepted, with swap/edit applied; or trusted by the policy and not
    rejected by a review), SFT examples and KTO examples → a TRL snapshot.

    Answers that are trained towards (chosen sides, SFT answers, answers rated up) lose doc-site markup
    the model copied from its sources (`{{< copyable "shell" >}}`); rejected and down-rated answers keep
    it, since it may be what made them worse."""
    from flywheel.export import dpo_row, is_held_out, kto_row, prompt_key, sft_row
    from flywheel.text import strip_appended
    from training.data.clean import normalise, strip_site_markup

    markup: Counter = Counter()

    def clean(text: str) -> str:
        out, counts = strip_site_markup(text)
        markup.update(counts)
        return normalise(out) if counts else text

    pair_rows = flywheel.pairs_for_snapshot(db)
    reviews = flywheel.reviews_by_pair(db)

    pairs, sft, kto, seen = [], [], [], set()
    for pid, source, prompt, chosen, rejected, route, prov, status, _, auto in pair_rows:
        if not (include_unreviewed or in_dpo_snapshot(status, auto)):
            continue
        prompt = json.loads(prompt)
        # mined answers come without the gateway's sources list; an annotator's edit may paste one back
        chosen, rejected = clean(strip_appended(chosen)), strip_appended(rejected)
        meta = {
            "pair_id": pid,
            "source": source,
            "route": route,
            "status": status,
            "auto_accepted_by": auto,
            "reviews": reviews.get(pid, []),
        }
        pairs.append((dpo_row(prompt, chosen, rejected), {**meta, **json.loads(prov)}))
        if status == "accepted":  # the reviewed chosen answer is a good SFT example too
            row = sft_row([*prompt, {"role": "assistant", "content": chosen}])
            key = json.dumps(row, sort_keys=True)
            if key not in seen:
                seen.add(key)
                sft.append(
                    (
                        row,
                        {"pair_id": pid, "source": f"accepted_{source}", "route": route, **json.loads(prov)},
                    )
                )
    for eid, source, messages, route, prov in flywheel.sft_for_export(db):
        messages = json.loads(messages)
        answer = clean(strip_appended(messages[-1].get("content") or ""))
        messages[-1] = {**messages[-1], "content": answer}
        row = sft_row(messages)
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            sft.append((row, {"example_id": eid, "source": source, "route": route, **json.loads(prov)}))
    for eid, source, prompt, completion, label, route, prov in flywheel.kto_for_export(db):
        completion = strip_appended(completion)
        row = kto_row(json.loads(prompt), clean(completion) if label else completion, bool(label))
        kto.append((row, {"example_id": eid, "source": source, "route": route, **json.loads(prov)}))

    # A share of prompts is held out of every training part: the gates measure the preference margin on
    # their pairs (the "prefs" part), which no stage of this candidate trained on.
    share, held_prompts = settings.mining.heldout_pairs, set()
    if len({prompt_key(row["prompt"]) for row, _ in pairs}) >= settings.mining.heldout_min_prompts:
        held_prompts = {prompt_key(row["prompt"]) for row, _ in pairs if is_held_out(row["prompt"], share)}

    def held(prompt: list[dict[str, Any]]) -> bool:
        return prompt_key(prompt) in held_prompts

    prefs = [(row, {**m, "held_out": True}) for row, m in pairs if held(row["prompt"])]
    pairs = [(row, m) for row, m in pairs if not held(row["prompt"])]
    sft_held = sum(1 for row, _ in sft if held(row["messages"][:-1]))
    sft = [(row, m) for row, m in sft if not held(row["messages"][:-1])]
    kto_held = sum(1 for row, _ in kto if held(row["prompt"]))
    kto = [(row, m) for row, m in kto if not held(row["prompt"])]

    base = (
        Path(settings.annotation.export_dir).expanduser()
        if settings.annotation.export_dir
        else settings.data_dir / "datasets"
    )
    name = out or "flywheel-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dest = Path(name).expanduser()
    if not dest.is_absolute():
        dest = base / dest
    from training.data.snapshot import write_bundle

    meta = write_bundle(
        dest,
        {"dpo": pairs, "sft": sft, "kto": kto, "prefs": prefs},
        {"kind": "flywheel", "include_unreviewed": include_unreviewed},
    )
    parts = meta["parts"]
    export_id = "export-" + uuid.uuid4().hex[:12]
    stats = {
        "pairs": parts["dpo"]["rows"],
        "sft": parts["sft"]["rows"],
        "kto": parts["kto"]["rows"],
        "kto_up": sum(1 for row, _ in kto if row["label"]),
        "kto_down": sum(1 for row, _ in kto if not row["label"]),
        "pairs_auto_accepted": sum(1 for _, m in pairs if m["status"] == "pending" and m["auto_accepted_by"]),
        "prefs": parts["prefs"]["rows"],
        "held_out_prompts": len(held_prompts),
        "held_out_sft": sft_held,
        "held_out_kto": kto_held,
        "markup_removed": dict(sorted(markup.items())),
        "dpo_hash": parts["dpo"]["hash"],
        "sft_hash": parts["sft"]["hash"],
        "kto_hash": parts["kto"]["hash"],
    }
    flywheel.record_export(db, export_id, str(dest), meta["hash"], stats)
    return {"export_id": export_id, "path": str(dest), "hash": meta["hash"], **stats}
