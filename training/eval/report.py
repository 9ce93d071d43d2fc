"""The comparison report: an HTML page a person can read, and the same charts as a PNG.

Gate table (pass/fail, delta, 95% CI, reason), per-category MMLU/CMMLU bars, perplexity before/after,
and a few answers of the answers suite side by side (baseline vs candidate, with their judge scores).
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, select_autoescape

from keelcommon.files import write_text_atomic

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Keel eval: {{ cand.version }} vs {{ base.version }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }
 table { border-collapse: collapse; margin: 1rem 0; } th, td { padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 .pass { color: #0a7a2f; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
 .verdict { font-size: 1.4rem; padding: .5rem 1rem; display: inline-block; border-radius: 6px; }
 .verdict.pass { background: #e3f5e8; } .verdict.fail { background: #fbe4e7; } .verdict.info { background: #eef; }
 img { max-width: 100%; } small { color: #666; }
</style></head><body>
<h1>Candidate <code>{{ cand.version }}</code> vs served <code>{{ base.version }}</code></h1>
<p><small>suite {{ suite }} · candidate {{ cand.path }} · baseline {{ base.path }}</small></p>
{% if decision %}
<p class="verdict {{ 'pass' if decision.passed else 'fail' }}" id="verdict">{{ 'PASS' if decision.passed else 'FAIL' }}</p>
{% if decision.reasons %}<ul id="reasons">{% for r in decision.reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}
<h2>Gates</h2>
<table id="gates"><tr><th>gate</th><th>metric</th><th>baseline</th><th>candidate</th><th>delta</th><th>95% CI</th><th>significant</th><th>result</th><th>reason</th></tr>
{% for g in decision.gates %}<tr>
 <td>{{ g.gate }}</td><td>{{ g.metric }}</td>
 {% if g.error is defined or g.absent is defined %}<td colspan="5">{{ g.error if g.error is defined else g.absent }}</td>{% else %}
 <td class="num">{{ '%.3f' % g.baseline }}</td><td class="num">{{ '%.3f' % g.candidate }}</td>
 <td class="num">{{ '%+.2f' % g.delta }} {{ g.unit }}</td><td class="num">{{ '%+.2f' % g.ci[0] }} .. {{ '%+.2f' % g.ci[1] }}</td>
 <td>{{ 'yes' if g.significant else 'no' }}</td>{% endif %}
 <td class="{{ 'pass' if g.passed else 'fail' }}">{{ 'pass' if g.passed else 'FAIL' }}</td><td>{{ g.reason }}</td></tr>
{% endfor %}</table>
{% else %}<p class="verdict info">comparison (no policy applied)</p>{% endif %}
<h2>All deltas</h2>
<table id="deltas"><tr><th>metric</th><th>n</th><th>baseline</th><th>candidate</th><th>delta</th><th>95% CI</th><th>significant</th></tr>
{% for m, d in deltas.items() %}<tr><td>{{ m }}</td>{% if d.error is defined %}<td colspan="6">{{ d.error }}</td>{% else %}
<td class="num">{{ d.n }}</td><td class="num">{{ '%.3f' % d.baseline }}</td><td class="num">{{ '%.3f' % d.candidate }}</td>
<td class="num">{{ '%+.2f' % d.delta }} {{ d.unit }}</td><td class="num">{{ '%+.2f' % d.ci[0] }} .. {{ '%+.2f' % d.ci[1] }}</td>
<td>{{ 'yes' if d.significant else 'no' }}</td>{% endif %}</tr>{% endfor %}</table>
<p><small>Points: percentage points. score = mean probability of the correct letter among A-D.
prefs.margin: mean change of log p(chosen) - log p(rejected) on held-out mined pairs, in nats.
Perplexity deltas are relative changes in percent. Intervals: paired bootstrap over items/texts.</small></p>
<h2>Charts</h2>
<img id="chart" src="{{ png_name }}" alt="per-category accuracy, perplexity and answer scores before/after">
{% for bench in benches %}<h3>{{ bench.name|upper }} per category</h3>
<table><tr><th>category</th><th>n</th><th>acc base</th><th>acc cand</th><th>score base</th><th>score cand</th></tr>
{% for c in bench.rows %}<tr><td>{{ c.name }}</td><td class="num">{{ c.n }}</td><td class="num">{{ '%.3f' % c.b_acc }}</td><td class="num">{{ '%.3f' % c.c_acc }}</td>
<td class="num">{{ '%.3f' % c.b_score }}</td><td class="num">{{ '%.3f' % c.c_score }}</td></tr>{% endfor %}</table>
<p><small>Predicted-letter share (baseline → candidate): {% for L, v in bench.letters %}{{ L }} {{ '%.0f' % (v[0]*100) }}% → {{ '%.0f' % (v[1]*100) }}%{{ ', ' if not loop.last }}{% endfor %}</small></p>
{% endfor %}
{% if ppl %}<h3>Perplexity</h3><table><tr><th>set</th><th>part</th><th>tokens</th><th>ppl base</th><th>ppl cand</th><th>bpb base</th><th>bpb cand</th></tr>
{% for p in ppl %}<tr><td>{{ p.set }}</td><td>{{ p.part }}</td><td class="num">{{ p.tokens }}</td><td class="num">{{ '%.3f' % p.b_ppl }}</td><td class="num">{{ '%.3f' % p.c_ppl }}</td>
<td class="num">{{ '%.4f' % p.b_bpb }}</td><td class="num">{{ '%.4f' % p.c_bpb }}</td></tr>{% endfor %}</table>{% endif %}
{% if answers %}<h2>Answers side by side</h2>
<p><small>{{ answers.n }} held-out questions, identical frozen prompts (sha256 {{ answers.sha[:16] }}); mean judge score
(chrF, 0-1) {{ '%.3f' % answers.b_score }} served → {{ '%.3f' % answers.c_score }} candidate. Shown: the {{ answers.rows|length }}
questions whose score moved most.</small></p>
<table id="answers"><tr><th>question / reference</th><th>served</th><th>candidate</th></tr>
{% for a in answers.rows %}<tr><td><b>{{ a.question }}</b><br><small>{{ a.reference }}</small></td>
<td><pre style="white-space: pre-wrap">{{ a.b_answer }}</pre><small>score {{ '%.3f' % a.b_score }}{% if a.b_reason %} ({{ a.b_reason }}){% endif %}</small></td>
<td><pre style="white-space: pre-wrap">{{ a.c_answer }}</pre><small>score {{ '%.3f' % a.c_score }}{% if a.c_reason %} ({{ a.c_reason }}){% endif %}</small></td></tr>{% endfor %}</table>{% endif %}
</body></html>
"""


def _bench_rows(cand: dict, base: dict) -> list[dict]:
    out = []
    for name in ("mmlu", "cmmlu"):
        if name not in cand or name not in base:
            continue
        cc, bc = cand[name]["summary"]["categories"], base[name]["summary"]["categories"]
        rows = [
            {
                "name": k,
                "n": cc[k]["n"],
                "c_acc": cc[k]["acc"],
                "b_acc": bc[k]["acc"],
                "c_score": cc[k]["score"],
                "b_score": bc[k]["score"],
            }
            for k in cc
            if k in bc
        ]
        lc, lb = cand[name]["summary"]["pred_letter_share"], base[name]["summary"]["pred_letter_share"]
        out.append({"name": name, "rows": rows, "letters": [(L, (lb[L], lc[L])) for L in lc]})
    return out


def _ppl_rows(cand: dict, base: dict) -> list[dict]:
    out = []
    for name in ("domain", "general"):
        if name not in cand or name not in base:
            continue
        pairs = [("all", cand[name]["summary"], base[name]["summary"])]
        pairs += [(p, s, base[name]["parts"].get(p)) for p, s in cand[name]["parts"].items()]
        for part, c, b in pairs:
            if b is None or c.get("ppl") is None or b.get("ppl") is None:
                continue
            out.append(
                {
                    "set": name,
                    "part": part,
                    "tokens": c["tokens"],
                    "c_ppl": c["ppl"],
                    "b_ppl": b["ppl"],
                    "c_bpb": c["bpb"],
                    "b_bpb": b["bpb"],
                }
            )
    return out


def _answer_rows(cand: dict, base: dict, shown: int = 6) -> dict | None:
    """The answers suite side by side: the questions whose score moved most (either way)."""
    if "answers" not in cand or "answers" not in base:
        return None
    b_items = {r["id"]: r for r in base["answers"]["items"]}
    pairs = [(c, b_items[c["id"]]) for c in cand["answers"]["items"] if c["id"] in b_items]
    if not pairs:
        return None
    pairs.sort(key=lambda cb: (-abs(cb[0]["score"] - cb[1]["score"]), cb[0]["id"]))
    clip = lambda t, n=400: t if len(t) <= n else t[:n] + " …"  # noqa: E731
    rows = [
        {
            "question": c["question"],
            "reference": clip(c.get("reference", ""), 200),
            "c_answer": clip(c["answer"]),
            "b_answer": clip(b["answer"]),
            "c_score": c["score"],
            "b_score": b["score"],
            "c_reason": c.get("reason"),
            "b_reason": b.get("reason"),
        }
        for c, b in pairs[:shown]
    ]
    return {
        "n": len(pairs),
        "sha": cand["answers"].get("sha256", ""),
        "c_score": sum(c["score"] for c, _ in pairs) / len(pairs),
        "b_score": sum(b["score"] for _, b in pairs) / len(pairs),
        "rows": rows,
    }


def _answer_lang_rows(cand: dict, base: dict) -> list[dict]:
    """Mean judge score per question language (and all), served vs candidate, on the questions both answered."""
    if "answers" not in cand or "answers" not in base:
        return []
    b_items = {r["id"]: r for r in base["answers"]["items"]}
    pairs = [(c, b_items[c["id"]]) for c in cand["answers"]["items"] if c["id"] in b_items]
    langs = sorted({str(c.get("lang")) for c, _ in pairs})
    rows = []
    for lang in (["all"] if len(langs) > 1 else []) + langs:
        sel = [(c, b) for c, b in pairs if lang == "all" or str(c.get("lang")) == lang]
        if sel:
            rows.append(
                {
                    "lang": lang,
                    "n": len(sel),
                    "b": sum(b["score"] for _, b in sel) / len(sel),
                    "c": sum(c["score"] for c, _ in sel) / len(sel),
                }
            )
    return rows


def render_png(
    benches: list[dict],
    ppl: list[dict],
    path: Path,
    labels: tuple[str, str],
    answers: list[dict] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers
    import matplotlib.pyplot as plt
    import numpy as np

    panels = len(benches) + (1 if ppl else 0) + (1 if answers else 0) or 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    axes = axes[0]
    for ax, bench in zip(axes, benches, strict=False):
        names = [r["name"] for r in bench["rows"]]
        x = np.arange(len(names))
        ax.bar(x - 0.2, [r["b_acc"] for r in bench["rows"]], 0.4, label=f"{labels[1]} acc")
        ax.bar(x + 0.2, [r["c_acc"] for r in bench["rows"]], 0.4, label=f"{labels[0]} acc")
        ax.plot(x - 0.2, [r["b_score"] for r in bench["rows"]], "k_", ms=14, label=f"{labels[1]} score")
        ax.plot(x + 0.2, [r["c_score"] for r in bench["rows"]], "r_", ms=14, label=f"{labels[0]} score")
        ax.axhline(0.25, color="grey", lw=0.8, ls=":")  # chance with four options
        ax.set_xticks(x, [n[:16] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{bench['name'].upper()} per category")
        ax.legend(fontsize=7)
    if ppl:
        ax = axes[len(benches)]
        rows = [p for p in ppl if p["part"] == "all"] or ppl
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [p["b_ppl"] for p in rows], 0.4, label=labels[1])
        ax.bar(x + 0.2, [p["c_ppl"] for p in rows], 0.4, label=labels[0])
        ax.set_xticks(x, [p["set"] for p in rows])
        ax.set_title("perplexity (lower is better)")
        ax.legend(fontsize=8)
    if answers:
        ax = axes[len(benches) + (1 if ppl else 0)]
        x = np.arange(len(answers))
        ax.bar(x - 0.2, [r["b"] for r in answers], 0.4, label=labels[1])
        ax.bar(x + 0.2, [r["c"] for r in answers], 0.4, label=labels[0])
        ax.set_xticks(x, [f"{r['lang']} ({r['n']})" for r in answers])
        ax.set_ylim(
            0, 1.35 * max([r["b"] for r in answers] + [r["c"] for r in answers] + [0.01])
        )  # legend room
        ax.set_title("answers: mean judge score by question language")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    cand: dict, base: dict, deltas: dict, decision: dict | None, out_dir: Path, name: str = "report"
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.html`` and ``<name>.png``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    benches, ppl = _bench_rows(cand, base), _ppl_rows(cand, base)
    png = out_dir / f"{name}.png"
    c_ver, b_ver = cand["checkpoint"]["version"], base["checkpoint"]["version"]
    render_png(
        benches, ppl, png, (f"{c_ver} (candidate)", f"{b_ver} (served)"), _answer_lang_rows(cand, base)
    )
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(TEMPLATE).render(
        cand=cand["checkpoint"],
        base=base["checkpoint"],
        suite=cand.get("name"),
        decision=decision,
        deltas=deltas,
        benches=benches,
        ppl=ppl,
        png_name=png.name,
        answers=_answer_rows(cand, base),
    )
    html_path = out_dir / f"{name}.html"
    write_text_atomic(html_path, html)
    return html_path, png
