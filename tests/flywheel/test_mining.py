"""Mining on a planted log in a temp DuckDB file: every rule, provenance, dedup, PII, eval overlap, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from keel.config import load_settings
from keel.cycle.mining import run_export, run_mining
from keel.store.db import Database
from keel.store.review import ReviewQueue

from flywheel.config import MiningConfig
from flywheel.mining import Miner, MiningHooks
from tests.flywheel.planted import FAQ_Q, SUFFIX, engine_messages, feedback, plant, request
from training.data.dedup import NearDupIndex


@pytest.fixture
def setup(tmp_path: Path):
    evals = tmp_path / "faq.jsonl"
    evals.write_text(json.dumps({"question": FAQ_Q, "answer": "Edit the config."}) + "\n")
    settings = load_settings(
        overrides=[
            f"data_dir={tmp_path / 'data'}",
            f"mining.eval_sets=[{evals}]",
            "annotation.double_annotate_fraction=0",
        ]
    )
    db = Database(settings.db_path)
    plant(db.cursor())
    yield settings, db
    db.close()


def _pairs(db) -> dict[str, dict]:
    cur = db.cursor().execute(
        "SELECT source, prompt, chosen, rejected, provenance, pair_id, status FROM pairs"
    )
    out = {}
    for source, prompt, chosen, rejected, prov, pid, status in cur.fetchall():
        assert source not in out, f"two {source} pairs"
        out[source] = {
            "prompt": json.loads(prompt),
            "chosen": chosen,
            "rejected": rejected,
            "prov": json.loads(prov),
            "id": pid,
            "status": status,
        }
    return out


def test_planted_log_gives_expected_pairs(setup):
    settings, db = setup
    out = run_mining(db, settings)
    st = out["stats"]
    pairs = _pairs(db)
    assert set(pairs) == {"edit", "regenerate", "choice", "thumbs"}

    edit = pairs["edit"]
    assert edit["chosen"] == "Use `CREATE INDEX idx ON t (c);`." and edit["rejected"] == "I do not know."
    assert (
        "alice@example.com" not in edit["prompt"][-1]["content"]
        and "<EMAIL>" in edit["prompt"][-1]["content"]
    )
    assert edit["prov"]["feedback_ids"] in (["f-edit"], ["f-edit2"])
    assert st["dropped_duplicate_pairs"] == 1  # the second identical edit (once the sources list is off)

    regen = pairs["regenerate"]
    assert regen["chosen"].startswith("TiKV is") and regen["rejected"] == "A kind of fruit."
    assert regen["prov"]["request_ids"] == ["r-new", "r-old"]
    assert set(regen["prov"]["feedback_ids"]) == {"f-down", "f-up"}

    choice = pairs["choice"]
    assert choice["chosen"].startswith("Raft is a consensus") and choice["rejected"] == "Raft is a boat."
    assert choice["prov"]["checkpoint_versions"] == ["v2", "base"]
    assert choice["prov"]["feedback_ids"] == ["f-choice"]

    thumbs = pairs["thumbs"]
    assert (thumbs["chosen"], thumbs["rejected"]) == ("Port 4000.", "Port 80.")
    assert thumbs["prov"]["request_ids"] == ["r-good", "r-bad"]  # the failed r-fail is never used
    assert st["skipped_failed"] >= 1

    sft = {
        r[0]: json.loads(r[1])
        for r in db.fetchall(
            "SELECT source || ':' || json_extract_string(provenance, '$.request_ids[0]'), messages FROM sft_examples"
        )
    }
    assert set(sft) == {"edit:r-edit", "thumbs_up:r-new", "thumbs_up:r-good"} or set(sft) == {
        "edit:r-edit2",
        "thumbs_up:r-new",
        "thumbs_up:r-good",
    }
    assert st["dropped_eval_overlap"] == 2  # r-eval's question is in the eval set (its SFT and KTO example)
    assert all(m[-1]["role"] == "assistant" for m in sft.values())

    # a second run starts at the watermark: nothing new, nothing doubled
    again = run_mining(db, settings)
    assert again["stats"]["pairs"] == 0 and again["since"] == out["until"]
    assert db.fetchall("SELECT count(*) FROM pairs")[0][0] == 4
    # new feedback after the watermark is picked up
    request(db.cursor(), "r-late", "k1", "Is TiDB MySQL compatible?", "No.", 30)
    feedback(
        db.cursor(), "f-late", "r-late", "k1", "edit", 31, edited_text="Yes, it speaks the MySQL protocol."
    )
    db.execute("UPDATE feedback SET created_at = now() WHERE feedback_id = 'f-late'")
    late = run_mining(db, settings)
    assert late["stats"]["pairs"] == 1 and late["stats"]["pairs_edit"] == 1


def test_review_then_export_trl_snapshot(setup, tmp_path):
    settings, db = setup
    run_mining(db, settings)
    queue = ReviewQueue(db, lease_s=60)
    decisions = {"edit": "accept", "regenerate": "swap", "choice": "edit", "thumbs": "reject"}
    by_source = {}
    while (item := queue.next_item("k-ann")) is not None:
        d = decisions[item["source"]]
        by_source[item["source"]] = item["pair_id"]
        queue.decide(
            "k-ann",
            "ann",
            item["pair_id"],
            item["lease_token"],
            d,
            "Raft: <b>consensus</b>." if d == "edit" else None,
        )
    assert set(by_source) == set(decisions)

    out = run_export(db, settings, str(tmp_path / "snap"))
    snap = Path(out["path"])
    rows = [json.loads(x) for x in (snap / "dpo" / "train.jsonl").read_text().splitlines()]
    prov = [json.loads(x) for x in (snap / "dpo" / "provenance.jsonl").read_text().splitlines()]
    assert len(rows) == len(prov) == 3  # the rejected pair is not exported
    got = {p["source"]: r for r, p in zip(rows, prov, strict=True)}
    assert got["regenerate"]["chosen"] == [{"role": "assistant", "content": "A kind of fruit."}]  # swapped
    assert got["choice"]["chosen"][0]["content"] == "Raft: <b>consensus</b>."  # the annotator's edit
    assert all(set(r) == {"prompt", "chosen", "rejected"} and r["prompt"][-1]["role"] == "user" for r in rows)
    assert all(p["reviews"] and p["request_ids"] for p in prov)

    sft = [json.loads(x) for x in (snap / "sft" / "train.jsonl").read_text().splitlines()]
    assert sft and all(set(r) == {"messages"} and r["messages"][-1]["role"] == "assistant" for r in sft)

    # the training pipeline reads the parts as they are, and agrees on the content hash
    from training.data.snapshot import content_hash, load_snapshot

    for part in ("dpo", "sft"):
        s = load_snapshot(snap / part)
        assert s.kind == part and s.hash == content_hash(snap / part)
    meta = json.loads((snap / "snapshot.json").read_text())
    assert meta["hash"] == out["hash"] and meta["parts"]["dpo"]["rows"] == 3
    with pytest.raises(ValueError, match="already exists"):
        run_export(db, settings, str(snap))


def test_leases_and_late_decisions(setup):
    settings, db = setup
    run_mining(db, settings)
    queue = ReviewQueue(db, lease_s=60)
    a, b = queue.next_item("k-a"), queue.next_item("k-b")
    assert a["pair_id"] != b["pair_id"]  # never the same item at once
    from keel.store.review import LeaseError

    with pytest.raises(LeaseError):  # k-b cannot answer k-a's item
        queue.decide("k-b", "b", a["pair_id"], b["lease_token"], "accept")
    first = queue.decide("k-a", "a", a["pair_id"], a["lease_token"], "accept")
    again = queue.decide("k-a", "a", a["pair_id"], a["lease_token"], "accept")
    assert again["duplicate"] and again["annotation_id"] == first["annotation_id"]
    db.execute(
        "UPDATE pairs SET lease_expires_at = now() - INTERVAL 1 SECOND WHERE pair_id = ?", [b["pair_id"]]
    )
    with pytest.raises(LeaseError):
        queue.decide("k-b", "b", b["pair_id"], b["lease_token"], "accept")
    assert db.fetchall("SELECT count(*) FROM annotations")[0][0] == 1  # nothing double-counted


def test_double_annotation_agreement(setup):
    settings, db = setup
    run_mining(db, settings)
    db.execute("UPDATE pairs SET required_reviews = 2")
    queue = ReviewQueue(db, lease_s=60)
    for key, decide in (("k1", lambda s: "accept"), ("k2", lambda s: "accept" if s != "thumbs" else "swap")):
        while (item := queue.next_item(key)) is not None:
            queue.decide(key, key, item["pair_id"], item["lease_token"], decide(item["source"]))
    ag = queue.agreement()
    assert ag["items"] == 4 and ag["agreement"] == 0.75
    status = dict(db.fetchall("SELECT source, status FROM pairs"))
    assert status["thumbs"] == "disputed" and status["edit"] == "accepted"


def test_pure_miner_dedup_and_refusals():
    rows = [
        {
            "request_id": f"r{i}",
            "key_id": "k",
            "messages": [{"role": "user", "content": "Hi there, what is PD?"}],
            "response_text": t,
        }
        for i, t in enumerate(["I'm sorry, but I can't help with that.", "PD is the placement driver."])
    ]
    fb = [{"feedback_id": "f0", "request_id": "r0", "kind": "thumbs", "rating": -1}]
    fb += [{"feedback_id": "f1", "request_id": "r1", "kind": "thumbs", "rating": 1}]
    miner = Miner(MiningConfig(), MiningHooks(dedup_index=NearDupIndex))
    assert miner.is_refusal(rows[0]["response_text"]) and not miner.is_refusal(rows[1]["response_text"])
    res = miner.mine(rows, fb)
    assert [(p.chosen, p.rejected) for p in res.pairs] == [
        (rows[1]["response_text"], rows[0]["response_text"])
    ]
    # the default scrubber (no training pipeline passed in) still removes contact details
    res = Miner(None, MiningHooks(dedup_index=NearDupIndex)).mine(
        [{**rows[1], "messages": [{"role": "user", "content": "call +1 (415) 555-0100"}]}], fb[1:]
    )
    assert "555-0100" not in json.dumps(res.sft[0].messages)


def test_load_window_on_duckdb(setup):
    _, db = setup
    from keel.store.flywheel import mining_window

    reqs, fbs = mining_window(db, None)
    assert {r["request_id"] for r in reqs} >= {"r-old", "r-new", "r-a", "r-b"}
    assert len(fbs) == 11


def test_training_rows_are_the_engine_prompt_and_the_model_own_text(setup, tmp_path):
    """Prompts are what the engine received (domain template, chunks), answers never carry the sources
    list the gateway appended (nor a user's edit that kept it); rows that cannot tell are skipped."""
    settings, db = setup
    st = run_mining(db, settings)["stats"]
    pairs = _pairs(db)
    prompts = {r[0]: json.loads(r[1]) for r in db.fetchall("SELECT request_id, messages FROM requests")}
    for p in pairs.values():
        rid = p["prov"]["request_ids"][0]
        assert p["prompt"] == engine_messages(
            prompts[rid][-1]["content"].replace("alice@example.com", "<EMAIL>")
        )
        assert "Sources:" not in p["chosen"] and "Sources:" not in p["rejected"]
    sft = [json.loads(r[0]) for r in db.fetchall("SELECT messages FROM sft_examples")]
    assert sft and all(m[0]["role"] == "system" and "Sources:" not in m[-1]["content"] for m in sft)
    used = {i for p in pairs.values() for i in p["prov"]["request_ids"]}
    used |= {
        r[0]
        for r in db.fetchall("SELECT json_extract_string(provenance, '$.request_ids[0]') FROM sft_examples")
    }
    # each is skipped by both rules that would use a rated answer (SFT and KTO)
    assert not used & {"r-legacy", "r-oos"} and st["skipped_no_engine_prompt"] == 4

    # an annotator who pastes a sources list into the chosen answer: the export still drops it
    queue = ReviewQueue(db, lease_s=60)
    while (item := queue.next_item("k-ann")) is not None:
        edit = item["chosen"] + SUFFIX if item["source"] == "choice" else None
        queue.decide("k-ann", "ann", item["pair_id"], item["lease_token"], "edit" if edit else "accept", edit)
    snap = Path(run_export(db, settings, str(tmp_path / "snap"))["path"])
    for part in ("dpo", "sft", "kto"):
        text = (snap / part / "train.jsonl").read_text()
        assert text and "Sources:" not in text


def _part(snap: Path, part: str) -> list[tuple[dict, dict]]:
    rows = [json.loads(x) for x in (snap / part / "train.jsonl").read_text().splitlines()]
    prov = [json.loads(x) for x in (snap / part / "provenance.jsonl").read_text().splitlines()]
    return list(zip(rows, prov, strict=True))


def test_thumbs_become_kto_examples_with_provenance(setup, tmp_path):
    settings, db = setup
    st = run_mining(db, settings)["stats"]
    # rated: r-old down, r-new up, r-good up, r-bad down; r-fail failed, r-eval is an eval question,
    # r-legacy and r-oos have no engine prompt
    assert (st["kto"], st["kto_up"], st["kto_down"]) == (4, 2, 2)
    kto = _part(Path(run_export(db, settings, str(tmp_path / "a"))["path"]), "kto")
    got = {p["request_ids"][0]: (r, p) for r, p in kto}
    assert set(got) == {"r-old", "r-new", "r-good", "r-bad"}
    row, prov = got["r-bad"]
    assert row == {
        "prompt": engine_messages("What port does the TiDB server listen on by default ?"),
        "completion": [{"role": "assistant", "content": "Port 80."}],  # the model's own text, no sources
        "label": False,
    }
    assert prov["feedback_ids"] == ["f-bad"] and prov["source"] == "thumbs_down" and prov["example_id"]
    assert got["r-new"][0]["label"] is True and got["r-new"][1]["feedback_ids"] == ["f-up"]
    # `keel lineage --request` follows a rated request into its KTO example and the export part
    from keel.store.lineage import of_request

    lin = of_request(db, "r-bad")
    assert [(e["source"], e["label"]) for e in lin["kto_examples"]] == [("thumbs_down", False)]
    assert any("kto" in x["parts"] for x in lin["datasets"])

    # a user changes their mind: the latest rating is the one trained, once
    feedback(db.cursor(), "f-good2", "r-good", "k2", "thumbs", 40, rating=-1)
    db.execute("UPDATE feedback SET created_at = now() WHERE feedback_id = 'f-good2'")
    assert run_mining(db, settings)["stats"]["kto"] == 1
    kto = _part(Path(run_export(db, settings, str(tmp_path / "b"))["path"]), "kto")
    good = [(r, p) for r, p in kto if p["request_ids"] == ["r-good"]]
    assert len(good) == 1 and good[0][0]["label"] is False and good[0][1]["feedback_ids"] == ["f-good2"]


def test_trusted_pairs_train_without_review_and_a_review_wins(setup, tmp_path):
    settings, db = setup
    st = run_mining(db, settings)["stats"]
    assert st["pairs_auto_accepted"] == 3  # edit, regenerate, choice; the thumbs pair waits
    dpo = _part(Path(run_export(db, settings, str(tmp_path / "a"))["path"]), "dpo")
    by_source = {p["source"]: (r, p) for r, p in dpo}
    assert set(by_source) == {"edit", "regenerate", "choice"}
    edit_row, edit_prov = by_source["edit"]
    assert edit_row["chosen"][0]["content"] == "Use `CREATE INDEX idx ON t (c);`."  # the edit, unreviewed
    assert edit_prov["status"] == "pending" and edit_prov["auto_accepted_by"] == "edit"
    assert not edit_prov["reviews"]

    # the trusted pair is still in the review queue; a reviewer rejects it: the next snapshot drops it
    queue = ReviewQueue(db, lease_s=60)
    while (item := queue.next_item("k-ann")) is not None:
        decision = "reject" if item["source"] == "edit" else "skip"
        queue.decide("k-ann", "ann", item["pair_id"], item["lease_token"], decision)
        if decision == "reject":
            break
    dpo = _part(Path(run_export(db, settings, str(tmp_path / "b"))["path"]), "dpo")
    assert {p["source"] for _, p in dpo} == {"regenerate", "choice"}


def test_trust_policy_with_an_unknown_kind_is_one_config_line(tmp_path):
    from keel.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_settings(overrides=[f"data_dir={tmp_path}", "mining.trust.auto_accept=[edit, thumb]"])
    msg = str(e.value)
    assert "\n" not in msg and "mining.trust.auto_accept: unknown feedback kind 'thumb'" in msg
    ok = load_settings(overrides=[f"data_dir={tmp_path}", "mining.trust.auto_accept=[]"])
    assert ok.mining.trust.auto_accept == []


def test_a_share_of_prompts_is_held_out_of_every_training_part(tmp_path):
    """Edits on 40 questions, each asked twice: the export holds ~20% of the prompts out of DPO, SFT and KTO
    alike (the prefs part the gates score), by a hash of the prompt, so both askings of a question and
    every later export keep it on the same side."""
    from flywheel.export import is_held_out, prompt_key
    from tests.flywheel.planted import request

    settings = load_settings(
        overrides=[f"data_dir={tmp_path / 'data'}", "annotation.double_annotate_fraction=0"]
    )
    db = Database(settings.db_path)
    con = db.cursor()
    for q in range(40):
        for k in range(2):
            rid = f"r{q}-{k}"
            request(
                con, rid, f"k{k}", f"How do I tune setting number {q} in TiDB?", f"Unsure {k}.", 2 * q + k
            )
            feedback(
                con, f"e{q}-{k}", rid, f"k{k}", "edit", 2 * q + k, edited_text=f"Set option {q} to {k + 1}."
            )
            feedback(con, f"t{q}-{k}", rid, f"k{k}", "thumbs", 2 * q + k, rating=-1)
    run_mining(db, settings)
    out = run_export(db, settings, str(tmp_path / "snap"))
    snap = Path(out["path"])

    def part(name: str) -> list[dict]:
        return [json.loads(x) for x in (snap / name / "train.jsonl").read_text().splitlines()]

    def key(row: dict, field: str) -> str:
        return prompt_key(row[field] if field == "prompt" else row["messages"][:-1])

    held = {key(r, "prompt") for r in part("prefs")}
    assert (
        3 <= len(held) <= 16 and out["held_out_prompts"] == len(held) and out["prefs"] == len(part("prefs"))
    )
    assert all(is_held_out(r["prompt"], 0.2) for r in part("prefs"))
    assert not held & {key(r, "prompt") for r in part("dpo")}
    assert not held & {key(r, "messages") for r in part("sft")}
    assert not held & {key(r, "prompt") for r in part("kto")}
    assert (
        out["held_out_sft"] > 0 and out["held_out_kto"] > 0 and len(part("dpo")) > 15
    )  # (near-duplicates dropped)
    again = run_export(db, settings, str(tmp_path / "snap2"))
    assert (Path(again["path"]) / "prefs" / "train.jsonl").read_text() == (
        snap / "prefs" / "train.jsonl"
    ).read_text()

    off = load_settings(overrides=[f"data_dir={tmp_path / 'data'}", "mining.heldout_pairs=0"])
    none = run_export(db, off, str(tmp_path / "snap3"))
    assert none["prefs"] == 0 and none["pairs"] == out["pairs"] + out["prefs"]
    db.close()
