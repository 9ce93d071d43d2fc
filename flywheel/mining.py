"""Mining: requests + feedback → preference pairs and SFT examples, each with its provenance.

Rules (each switchable in MiningConfig):
- edit: chosen = the user's edit, rejected = the original answer; the edit is also an SFT example;
- regeneration: an answer rated down, then its regeneration (header link or feedback) rated up;
- choice: an annotator preferred one of two answers to the same prompt;
- thumbs: an answer rated up vs one rated down for the same or a near-identical prompt (MinHash);
- SFT: answers rated up;
- KTO: every rated answer as an unpaired signal (up: desirable, down: undesirable; the latest rating).
Then PII is scrubbed, near-duplicates (MinHash) and items overlapping evaluation sets are dropped, and
failed requests (and refusals nobody labelled) are skipped. The function is pure over dicts, so the
platform (DuckDB), the flywheel cycle and the benchmark call the same code; the platform's store reads
the rows a run needs (keel.store.flywheel.mining_window) and hands them in: this module never sees a
connection.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from datasketch import MinHashLSH

from flywheel.config import MiningConfig
from flywheel.text import basic_scrub, prompt_text, stable_key, strip_appended
from keelcommon.text import minhash, normalise


class DedupIndex(Protocol):
    def add_if_new(self, text: str, key: str) -> str | None:
        """Index ``text`` unless it (nearly) duplicates an indexed one; returns that one's key."""
        ...


@dataclass
class MiningHooks:
    """Pluggable text functions. The near-duplicate index has one owner, the data pipeline
    (training.data.dedup.NearDupIndex), which the platform passes in; flywheel keeps no copy of it."""

    dedup_index: Callable[[float], DedupIndex]  # threshold → index
    scrub: Callable[[str], str] = basic_scrub
    eval_overlap: Callable[[str], str | None] | None = None  # → where it overlaps, or None
    eval_sets: dict[str, int] = field(default_factory=dict)  # what eval_overlap checks against (reported)


@dataclass
class PairItem:
    pair_key: str
    source: str
    prompt: list[dict[str, Any]]
    chosen: str
    rejected: str
    route: str | None
    retrieved: list[dict[str, Any]]
    provenance: dict[str, Any]


@dataclass
class SftItem:
    example_key: str
    source: str
    messages: list[dict[str, Any]]
    route: str | None
    provenance: dict[str, Any]


@dataclass
class KtoItem:
    """One rated answer: what the engine saw, what the model answered, and whether the user liked it."""

    example_key: str
    request_id: str
    source: str  # thumbs_up | thumbs_down
    prompt: list[dict[str, Any]]
    completion: str
    label: bool
    route: str | None
    provenance: dict[str, Any]


@dataclass
class MiningResult:
    pairs: list[PairItem] = field(default_factory=list)
    sft: list[SftItem] = field(default_factory=list)
    kto: list[KtoItem] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Routes on which the engine received the client's messages unchanged (rows logged before the request
# log kept engine_messages can still be used on these).
_PLAIN_ROUTES = (None, "direct", "chat")


class _Req:
    """A request row with the fields mining reads.

    ``messages`` is what the client sent (prompts are compared on it); ``prompt`` is what the engine
    received and ``text`` the model's own answer (training rows are built from these two), or None when
    the row cannot tell (out_of_scope: a canned reply, no engine call; or an older domain row logged
    before the request log kept the engine's messages).
    """

    __slots__ = (
        "id",
        "key_id",
        "messages",
        "prompt",
        "appended",
        "text",
        "route",
        "retrieved",
        "version",
        "ok",
        "regenerate_of",
        "at",
    )

    def __init__(self, row: dict[str, Any]):
        self.id = row["request_id"]
        self.key_id = row.get("key_id")
        self.messages = _json(row.get("messages")) or []
        self.route = row.get("route")
        meta = _json(row.get("meta")) or {}
        engine = _json(row.get("engine_messages"))
        if engine is not None:
            self.prompt = engine
        elif self.route in _PLAIN_ROUTES or (self.route == "domain" and meta.get("fallback")):
            self.prompt = self.messages
        else:
            self.prompt = None
        self.appended = row.get("appended_text") or meta.get("sources_text") or ""
        own = row.get("completion_text")
        shown = row.get("response_text") or ""
        self.text = own if own is not None else strip_appended(shown, self.appended or None)
        self.retrieved = _json(row.get("retrieved")) or []
        self.version = row.get("checkpoint_version")
        status = row.get("status_code")
        self.ok = not row.get("error") and (status is None or status < 400) and bool(self.text)
        self.regenerate_of = row.get("regenerate_of")
        self.at = row.get("created_at")


class Miner:
    def __init__(self, config: MiningConfig | None, hooks: MiningHooks):
        self.cfg = config or MiningConfig()
        self.hooks = hooks
        self._refusals = [re.compile(p) for p in self.cfg.refusal_patterns]

    def is_refusal(self, text: str) -> bool:
        return any(p.search(text) for p in self._refusals)

    # ---- entry -----------------------------------------------------------------------------------------------
    def mine(
        self,
        requests: Iterable[dict[str, Any]],
        feedback: Iterable[dict[str, Any]],
        known_keys: set[str] | None = None,
        existing_texts: Iterable[tuple[str, str]] = (),
    ) -> MiningResult:
        """``known_keys``: pair/example keys already stored (not emitted again); ``existing_texts``:
        (key, text) of stored items so near-duplicates of earlier runs are dropped too."""
        res = MiningResult()
        reqs: dict[str, _Req] = {}
        for row in requests:
            r = _Req(row)
            reqs[r.id] = r
        res.stats["requests"] = len(reqs)
        fbs = sorted(feedback, key=lambda f: (f.get("created_at") or _EPOCH, f["feedback_id"]))
        res.stats["feedback"] = len(fbs)
        rating: dict[str, tuple[int, str]] = {}  # latest thumbs per request: (±1, feedback id)
        for f in fbs:
            if f["kind"] == "thumbs" and f["request_id"] in reqs:
                rating[f["request_id"]] = (int(f["rating"]), f["feedback_id"])

        raw_pairs: list[PairItem] = []
        raw_sft: list[SftItem] = []
        paired: set[frozenset[str]] = set()

        def usable(r: _Req | None, labelled: bool) -> bool:
            if r is None:
                res.stats["skipped_missing_request"] += 1
                return False
            if not r.ok:
                res.stats["skipped_failed"] += 1
                return False
            if r.prompt is None:
                res.stats["skipped_no_engine_prompt"] += 1
                return False
            if len(r.text.strip()) < self.cfg.min_chars:
                res.stats["skipped_short"] += 1
                return False
            if not labelled and self.is_refusal(r.text):
                res.stats["skipped_refusal"] += 1
                return False
            return True

        def prov(rs: list[_Req], fids: list[str], rule: str) -> dict[str, Any]:
            return {
                "rule": rule,
                "request_ids": [r.id for r in rs],
                "feedback_ids": fids,
                "routes": [r.route for r in rs],
                "checkpoint_versions": [r.version for r in rs],
            }

        def pair(source: str, good: _Req, chosen: str, bad: _Req, rejected: str, fids: list[str]) -> None:
            rs = [good] if good is bad else [good, bad]
            assert good.prompt is not None
            raw_pairs.append(
                PairItem(
                    pair_key=stable_key(source, *sorted({r.id for r in rs}), *sorted(fids)),
                    source=source,
                    prompt=good.prompt,
                    chosen=chosen,
                    rejected=rejected,
                    route=good.route,
                    retrieved=good.retrieved,
                    provenance=prov(rs, fids, source),
                )
            )
            paired.add(frozenset(r.id for r in rs))

        # 1. edits (a label: allowed even for refusals; a failed request gives only the SFT example)
        for f in fbs:
            if f["kind"] != "edit":
                continue
            r = reqs.get(f["request_id"])
            if r is None:
                res.stats["skipped_missing_request"] += 1
                continue
            if r.prompt is None:
                res.stats["skipped_no_engine_prompt"] += 1
                continue
            # the user edited what they saw: the sources list the gateway appended is not theirs
            edited = strip_appended(f.get("edited_text") or "", r.appended or None)
            if self.cfg.pairs_from_edits and r.text and normalise(r.text) != normalise(edited):
                pair("edit", r, edited, r, r.text, [f["feedback_id"]])
            if self.cfg.sft_from_edits:
                raw_sft.append(
                    self._sft("edit", r, edited, [f["feedback_id"]], prov([r], [f["feedback_id"]], "edit"))
                )

        # 2. regenerations: links from the gateway header and from regenerate feedback
        links: dict[tuple[str, str], list[str]] = {}
        for r in reqs.values():
            if r.regenerate_of:
                links.setdefault((r.regenerate_of, r.id), [])
        for f in fbs:
            if f["kind"] == "regenerate" and f.get("other_request_id"):
                links.setdefault((f["request_id"], f["other_request_id"]), []).append(f["feedback_id"])
        if self.cfg.pairs_from_regenerations:
            for (old_id, new_id), fids in links.items():
                old, new = reqs.get(old_id), reqs.get(new_id)
                if old is None or new is None or old.key_id != new.key_id:
                    res.stats["skipped_regenerate_unlinked"] += 1
                    continue
                new_r, old_r = rating.get(new_id), rating.get(old_id)
                old_bad = old_r is not None and old_r[0] < 0
                if not (new_r and new_r[0] > 0) or (old_r and old_r[0] > 0):
                    res.stats["regenerate_without_preference"] += 1
                    continue
                if self.cfg.regenerate_requires_thumbs_down and not old_bad:
                    res.stats["regenerate_without_preference"] += 1
                    continue
                if usable(new, True) and usable(old, old_bad):
                    rated = [x[1] for x in (old_r, new_r) if x]
                    pair("regenerate", new, new.text, old, old.text, [*fids, *rated])

        # 3. annotator choices
        for f in fbs:
            if f["kind"] != "choice":
                continue
            a, b = reqs.get(f["request_id"]), reqs.get(f.get("other_request_id") or "")
            if f.get("preferred") not in ("this", "other"):
                res.stats["choice_neither"] += 1
                continue
            if not (usable(a, True) and usable(b, True)):
                continue
            assert a is not None and b is not None
            if not self._same_prompt(a, b):
                res.stats["skipped_choice_prompt_mismatch"] += 1
                continue
            good, bad = (a, b) if f["preferred"] == "this" else (b, a)
            pair("choice", good, good.text, bad, bad.text, [f["feedback_id"]])

        # 4. thumbs: up vs down for the same or a near-identical prompt
        ups = [reqs[i] for i, (v, _) in rating.items() if v > 0]
        downs = [reqs[i] for i, (v, _) in rating.items() if v < 0]
        if self.cfg.pairs_from_thumbs and ups and downs:
            self._thumbs_pairs(ups, downs, rating, paired, pair, usable)

        # 5. SFT from thumbs up
        if self.cfg.sft_from_thumbs_up:
            for r in ups:
                if usable(r, True):
                    fid = rating[r.id][1]
                    raw_sft.append(self._sft("thumbs_up", r, r.text, [fid], prov([r], [fid], "thumbs_up")))

        # 6. KTO: each rated answer alone (a refusal rated down is a label too)
        raw_kto: list[KtoItem] = []
        if self.cfg.kto_from_thumbs:
            for rid, (v, fid) in sorted(rating.items()):
                r = reqs[rid]
                if usable(r, True):
                    assert r.prompt is not None
                    rule = "thumbs_up" if v > 0 else "thumbs_down"
                    raw_kto.append(
                        KtoItem(
                            example_key=stable_key("kto", r.id, fid),
                            request_id=r.id,
                            source=rule,
                            prompt=r.prompt,
                            completion=r.text,
                            label=v > 0,
                            route=r.route,
                            provenance=prov([r], [fid], rule),
                        )
                    )

        self._clean(raw_pairs, raw_sft, res, known_keys or set(), existing_texts, raw_kto)
        return res

    # ---- rules' helpers -----------------------------------------------------------------------------------
    def _same_prompt(self, a: _Req, b: _Req) -> bool:
        ta, tb = prompt_text(a.messages), prompt_text(b.messages)
        if normalise(ta) == normalise(tb):
            return True
        return minhash(ta).jaccard(minhash(tb)) >= self.cfg.near_prompt_threshold

    def _thumbs_pairs(self, ups, downs, rating, paired, pair, usable) -> None:
        lsh = MinHashLSH(threshold=self.cfg.near_prompt_threshold, num_perm=128)
        exact: dict[str, list[_Req]] = defaultdict(list)
        sigs = {}
        for d in downs:
            t = prompt_text(d.messages)
            exact[normalise(t)].append(d)
            sigs[d.id] = minhash(t)
            lsh.insert(d.id, sigs[d.id])
        by_id = {d.id: d for d in downs}
        for u in ups:
            t = prompt_text(u.messages)
            cands = {d.id: d for d in exact.get(normalise(t), [])}
            sig = minhash(t)
            for hit in lsh.query(sig):  # LSH proposes; the estimated Jaccard decides
                if sig.jaccard(sigs[hit]) >= self.cfg.near_prompt_threshold:
                    cands.setdefault(hit, by_id[hit])
            made = 0
            for d in sorted(cands.values(), key=lambda x: x.id):
                if made >= self.cfg.max_pairs_per_prompt:
                    break
                if frozenset((u.id, d.id)) in paired or u.id == d.id:
                    continue
                if usable(u, True) and usable(d, True):
                    pair("thumbs", u, u.text, d, d.text, [rating[u.id][1], rating[d.id][1]])
                    made += 1

    @staticmethod
    def _sft(source: str, r: _Req, answer: str, fids: list[str], provenance: dict[str, Any]) -> SftItem:
        assert r.prompt is not None
        return SftItem(
            example_key=stable_key("sft", source, r.id, *sorted(fids)),
            source=source,
            messages=[*r.prompt, {"role": "assistant", "content": answer}],
            route=r.route,
            provenance=provenance,
        )

    # ---- cleaning ---------------------------------------------------------------------------------------------
    def scrub_messages(self, messages: list[dict[str, Any]], stats: Counter) -> list[dict[str, Any]]:
        return [
            {**m, "content": self.scrub(m["content"], stats)} if isinstance(m.get("content"), str) else m
            for m in messages
        ]

    def scrub(self, text: str, stats: Counter) -> str:
        if not self.cfg.scrub_pii:
            return text
        out = self.hooks.scrub(text)
        if out != text:
            stats["pii_scrubbed_texts"] += 1
        return out

    def overlaps_eval(self, texts: Iterable[str]) -> str | None:
        if self.hooks.eval_overlap is None:
            return None
        for t in texts:
            hit = self.hooks.eval_overlap(t)
            if hit:
                return hit
        return None

    def _clean(
        self,
        pairs: list[PairItem],
        sft: list[SftItem],
        res: MiningResult,
        known: set[str],
        existing,
        kto: list[KtoItem] | None = None,
    ) -> None:
        st = res.stats
        pair_index = self.hooks.dedup_index(self.cfg.dedup_threshold)
        sft_index = self.hooks.dedup_index(self.cfg.dedup_threshold)
        # KTO: one index per label, so a rating changed from up to down is a new example, not a duplicate
        kto_index = {
            True: self.hooks.dedup_index(self.cfg.dedup_threshold),
            False: self.hooks.dedup_index(self.cfg.dedup_threshold),
        }
        for key, text in existing:
            if key.startswith("kto:"):
                kto_index[text.endswith("\x00up")].add_if_new(text, key)
            else:
                (sft_index if key.startswith("sft:") else pair_index).add_if_new(text, key)

        def admit(kind: str, key: str, index, prepare: Callable[[], tuple[list[str], str]]) -> bool:
            """Not seen before (by key), scrubbed, no evaluation item in it, no near-duplicate."""
            if key in known:
                st[f"{kind}_known"] += 1
                return False
            known.add(key)
            eval_texts, dedup_text = prepare()
            if self.overlaps_eval(eval_texts):
                st["dropped_eval_overlap"] += 1
                return False
            if index.add_if_new(dedup_text, key) is not None:
                st[f"dropped_duplicate_{kind}"] += 1
                return False
            return True

        def prepare_pair(p: PairItem) -> tuple[list[str], str]:
            p.prompt = self.scrub_messages(p.prompt, st)
            p.chosen, p.rejected = self.scrub(p.chosen, st), self.scrub(p.rejected, st)
            user = [str(m.get("content")) for m in p.prompt if m.get("role") == "user"]
            return [*user, p.chosen], f"{prompt_text(p.prompt)}\n\x00{p.chosen}\n\x00{p.rejected}"

        def prepare_sft(s: SftItem) -> tuple[list[str], str]:
            s.messages = self.scrub_messages(s.messages, st)
            user = [str(m.get("content")) for m in s.messages if m.get("role") == "user"]
            return [*user, str(s.messages[-1]["content"])], prompt_text(s.messages)

        def prepare_kto(k: KtoItem) -> tuple[list[str], str]:
            k.prompt = self.scrub_messages(k.prompt, st)
            k.completion = self.scrub(k.completion, st)
            user = [str(m.get("content")) for m in k.prompt if m.get("role") == "user"]
            return [*user, k.completion], kto_text(k.prompt, k.completion, k.label)

        res.pairs += [p for p in pairs if admit("pairs", p.pair_key, pair_index, lambda p=p: prepare_pair(p))]
        res.sft += [s for s in sft if admit("sft", s.example_key, sft_index, lambda s=s: prepare_sft(s))]
        res.kto += [
            k
            for k in kto or []
            if admit("kto", k.example_key, kto_index[k.label], lambda k=k: prepare_kto(k))
        ]
        st["pairs"] = len(res.pairs)
        st["sft"] = len(res.sft)
        st["kto"] = len(res.kto)
        st["kto_up"] = sum(k.label for k in res.kto)
        st["kto_down"] = st["kto"] - st["kto_up"]
        for p in res.pairs:
            st[f"pairs_{p.source}"] += 1


def kto_text(prompt: list[dict[str, Any]], completion: str, label: bool) -> str:
    """What near-duplicate KTO examples are compared on (the same answer rated twice is one example)."""
    return f"{prompt_text(prompt)}\n\x00{completion}\n\x00{'up' if label else 'down'}"
