"""Feedback trains unattended: thumbs become a real `train:kto` step, and a trusted pair is in the cycle's
DPO data with no review, on the platform's real parts (DuckDB, export, training and eval children)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.flywheel.planted import feedback, request
from tests.flywheel.test_cycle_platform import _policy, _service, env  # noqa: F401 - the platform fixture

pytestmark = pytest.mark.slow

TINY = {"max_length": 96, "per_device_train_batch_size": 2, "save_steps": 100, "learning_rate": 5e-5}
ANSWERS = [  # (question, answer, rating)
    ("What port does TiDB listen on?", "TiDB listens on port 4000 by default.", 1),
    ("What is TiKV?", "TiKV is the distributed key-value storage layer of TiDB.", 1),
    ("What does PD do?", "PD stores cluster metadata and schedules Regions.", 1),
    ("How do I deploy TiDB?", "Use TiUP to deploy, scale and upgrade a cluster.", 1),
    ("What is TiFlash?", "A kind of fruit from Peru.", -1),
    ("Is TiDB MySQL compatible?", "No, it only speaks PostgreSQL.", -1),
]


def _profile(path: Path, policy: Path, **cycle) -> Path:
    """A profile file in the data dir (the platform reads profiles only from there or the shipped ones)."""
    prof = {
        "cycle": {
            "stages": ["kto"],
            "min_dpo_pairs": 1,
            "min_kto_per_class": 2,
            "policy": str(policy),
            "eval": {"backend": "transformers", "gate_per_subject": 2, "gate_general_docs": 2},
            "kto": {"overrides": {**TINY, "max_steps": 3}, "budget": {"wall_clock_s": 300}},
            "launcher": {"threads": 1, "nice": 5},
            **cycle,
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(prof), encoding="utf-8")
    return path


def _rate(db, answers, start: int) -> None:
    con = db.cursor()
    for i, (q, a, rating) in enumerate(answers, start):
        request(con, f"r{i}", f"k{i}", q, a, 2 * i)
        feedback(con, f"f{i}", f"r{i}", f"k{i}", "thumbs", 2 * i + 1, rating=rating)


def test_thumbs_train_kto_and_trusted_pairs_are_dpo_data_without_review(env):  # noqa: F811
    svc, db = _service(env)
    try:
        # only answers rated up so far: KTO is skipped with its reason, nothing crashes
        _rate(db, [a for a in ANSWERS if a[2] > 0], 0)
        dry = svc.start(
            "cli",
            profile=str(_profile(env["root"] / "keel" / "p0.yaml", env["pass"])),
            dry_run=True,
            wait=True,
        )
        s0 = {s["name"]: s for s in svc.show(dry.cycle_id)["steps"]}
        assert dry.status == "succeeded", dry.error
        assert s0["snapshot:kto"]["status"] == "skipped"
        assert (
            "4 answers rated up and 0 rated down; KTO needs at least 2 of each"
            in s0["snapshot:kto"]["reason"]
        )

        # answers rated down, and a user's edit (trusted: DPO trains on it with no review)
        _rate(db, [a for a in ANSWERS if a[2] < 0], 10)
        request(db.cursor(), "r-edit", "k9", "Who develops TiDB?", "Nobody knows.", 40)
        feedback(db.cursor(), "f-edit", "r-edit", "k9", "edit", 41, edited_text="PingCAP develops TiDB.")
        db.execute("UPDATE feedback SET created_at = now() WHERE feedback_id = 'f-edit'")  # after the dry run
        # a gate only CPT could pass: it binds only a candidate that trained CPT (this one trains KTO alone)
        staged = _policy(
            env["root"] / "staged.yaml",
            {
                "domain_bpb": {"metric": "domain.bpb", "min_fall_pct": 99, "stages": ["cpt"]},
                "general_en_bpb": {"metric": "general_en.bpb", "max_rise_pct": 1000},
            },
        )
        c = svc.start("cli", profile=str(_profile(env["root"] / "keel" / "p1.yaml", staged)), wait=True)
        steps = {s["name"]: s for s in svc.show(c.cycle_id)["steps"]}
        assert c.status == "succeeded", (c.error, steps)

        # the cycle's export: the user's edit is DPO data though nobody reviewed it
        export = Path(steps["snapshot:kto"]["output"]["export"])
        assert "PingCAP develops TiDB." in (export / "dpo" / "train.jsonl").read_text()
        assert db.fetchall("SELECT count(*) FROM annotations")[0][0] == 0

        kto_snap = steps["snapshot:kto"]["output"]
        assert (kto_snap["up"], kto_snap["down"]) == (4, 2)
        kto = steps["train:kto"]
        assert kto["status"] == "done" and kto["output"]["steps"] == 3, kto
        assert kto["output"]["parent"] == "base"  # from what serves
        assert kto["output"]["loss"] is not None and kto["output"]["first_loss"] is not None
        manifest = json.loads((Path(kto["output"]["path"]) / "manifest.json").read_text())
        assert manifest["labels"] == {"desirable": 4, "undesirable": 2}
        assert manifest["class_weights"]["desirable"] < manifest["class_weights"]["undesirable"]
        # each KTO row keeps the request and feedback it came from
        prov = [json.loads(x) for x in (Path(kto_snap["path"]) / "provenance.jsonl").read_text().splitlines()]
        assert {p["request_ids"][0] for p in prov} == {f"r{i}" for i in (0, 1, 2, 3, 10, 11)}
        assert all(p["feedback_ids"] for p in prov)
        assert steps["evaluate"]["status"] == "done" and steps["gate"]["status"] == "done"
        decision = json.loads(Path(steps["gate"]["output"]["decision"]).read_text())
        assert decision["trained"] == ["kto"]  # read from the manifests back to what served
        domain = next(g for g in decision["gates"] if g["gate"] == "domain_bpb")
        assert not domain["required"] and "not required" in domain["reason"]
        assert c.outcome == "promoted"
        # `keel lineage --request`: the rated request → its KTO example → the export → the KTO checkpoint
        from keel.store.lineage import of_request

        lin = of_request(db, "r10")
        assert [e["source"] for e in lin["kto_examples"]] == ["thumbs_down"]
        assert kto["output"]["version"] in {c["version"] for c in lin["checkpoints"]}
    finally:
        db.close()
