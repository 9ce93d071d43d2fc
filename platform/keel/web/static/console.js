// Keel console. Every piece of text from the platform (messages, answers, reasons, versions, names) goes
// into the page with textContent or as an SVG text node: it is never parsed as HTML. Charts are SVG drawn here.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2456d6", "#1e7a46", "#c2410c", "#7c3aed", "#0e7490", "#b91c1c", "#a16207", "#4b5563"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

async function api(path, opts = {}) {
  const r = await fetch(path, {
    credentials: "same-origin",
    headers: opts.body ? { "Content-Type": "application/json" } : {},
    ...opts,
  });
  if (r.status === 401) {
    location.reload(); // the session ended: back to the login form
    throw new Error("logged out");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || `HTTP ${r.status}`);
  return body;
}

const fmtTime = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");
const fmtMs = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`);
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);
function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}
function color(i) {
  return COLORS[i % COLORS.length];
}
function legend(box, names) {
  box.replaceChildren(...names.map((n, i) => el("span", {}, el("i", { "data-c": i }), n || "(none)")));
  box.querySelectorAll("i").forEach((i) => i.style.setProperty("background", color(Number(i.dataset.c))));
}

// ---- charts --------------------------------------------------------------------------------------------
function frame(node, W, H) {
  node.setAttribute("viewBox", `0 0 ${W} ${H}`);
  node.replaceChildren();
}

function axes(node, W, H, pad, ymax, yfmt, xs) {
  for (let i = 0; i <= 4; i++) {
    const y = H - pad.b - ((H - pad.t - pad.b) * i) / 4;
    node.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: y, y2: y, stroke: "#e6e8ec" }));
    node.append(svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end" }, yfmt((ymax * i) / 4)));
  }
  if (xs.length) {
    const step = Math.max(1, Math.ceil(xs.length / 6));
    xs.forEach((t, i) => {
      if (i % step) return;
      const x = pad.l + ((W - pad.l - pad.r) * (i + 0.5)) / xs.length;
      const d = new Date(t * 1000);
      const label = `${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`;
      node.append(svg("text", { x, y: H - 4, "text-anchor": "middle" }, label));
    });
  }
}

function stacked(node, buckets, key, names) {
  const W = 640, H = 190, pad = { l: 40, r: 8, t: 8, b: 18 };
  frame(node, W, H);
  const totals = buckets.map((b) => names.reduce((s, n) => s + (b[key][n] || 0), 0));
  const ymax = Math.max(1, ...totals);
  axes(node, W, H, pad, ymax, (v) => Math.round(v), buckets.map((b) => b.t));
  const bw = (W - pad.l - pad.r) / Math.max(1, buckets.length);
  buckets.forEach((b, i) => {
    let y = H - pad.b;
    names.forEach((n, j) => {
      const v = b[key][n] || 0;
      if (!v) return;
      const h = ((H - pad.t - pad.b) * v) / ymax;
      y -= h;
      const r = svg("rect", { x: pad.l + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: color(j) });
      r.append(svg("title", {}, `${n || "(none)"}: ${v}`));
      node.append(r);
    });
  });
}

function lines(node, buckets, series, yfmt) {
  const W = 640, H = 190, pad = { l: 48, r: 8, t: 8, b: 18 };
  frame(node, W, H);
  const vals = buckets.flatMap((b) => series.map((s) => s.get(b)).filter((v) => v !== null && v !== undefined));
  const ymax = Math.max(1e-9, ...vals) * 1.1;
  axes(node, W, H, pad, ymax, yfmt, buckets.map((b) => b.t));
  const bw = (W - pad.l - pad.r) / Math.max(1, buckets.length);
  series.forEach((s, j) => {
    const pts = [];
    buckets.forEach((b, i) => {
      const v = s.get(b);
      if (v === null || v === undefined) return;
      pts.push([pad.l + (i + 0.5) * bw, H - pad.b - ((H - pad.t - pad.b) * v) / ymax, v]);
    });
    if (pts.length > 1)
      node.append(svg("polyline", { points: pts.map((p) => `${p[0]},${p[1]}`).join(" "), fill: "none", stroke: color(j), "stroke-width": 2 }));
    for (const p of pts) {
      const c = svg("circle", { cx: p[0], cy: p[1], r: 2.5, fill: color(j) });
      c.append(svg("title", {}, `${s.name}: ${yfmt(p[2])}`));
      node.append(c);
    }
  });
}

function hbars(node, rows, series) {
  const W = 640, rowH = 22 * series.length + 10, pad = { l: 110, r: 60 };
  const H = Math.max(40, rows.length * rowH + 10);
  node.setAttribute("viewBox", `0 0 ${W} ${H}`);
  node.style.setProperty("height", `${Math.min(320, H)}px`);
  node.replaceChildren();
  const vmax = Math.max(1e-9, ...rows.flatMap((r) => series.map((s) => s.get(r) || 0)));
  rows.forEach((r, i) => {
    const y0 = 5 + i * rowH;
    node.append(svg("text", { x: pad.l - 6, y: y0 + rowH / 2, "text-anchor": "end" }, r.version));
    series.forEach((s, j) => {
      const v = s.get(r) || 0;
      const w = ((W - pad.l - pad.r) * v) / vmax;
      const y = y0 + j * 22;
      node.append(svg("rect", { x: pad.l, y, width: Math.max(1, w), height: 18, fill: color(j) }));
      node.append(svg("text", { x: pad.l + w + 4, y: y + 13 }, pct(s.get(r))));
    });
  });
}

function timeline(node, steps) {
  const W = 640, pad = { l: 120, r: 10 };
  const done = steps.filter((s) => s.started_at);
  const H = Math.max(40, done.length * 22 + 24);
  node.setAttribute("viewBox", `0 0 ${W} ${H}`);
  node.style.setProperty("height", `${Math.min(320, H)}px`);
  node.replaceChildren();
  if (!done.length) return;
  const t = (iso) => (iso ? Date.parse(iso) : Date.now());
  const t0 = Math.min(...done.map((s) => t(s.started_at)));
  const t1 = Math.max(...done.map((s) => t(s.finished_at)), t0 + 1000);
  const x = (v) => pad.l + ((W - pad.l - pad.r) * (v - t0)) / (t1 - t0);
  const fillFor = { done: "#1e7a46", running: "#2456d6", failed: "#b3261e", skipped: "#9ca3af" };
  done.forEach((s, i) => {
    const y = 6 + i * 22;
    node.append(svg("text", { x: pad.l - 6, y: y + 13, "text-anchor": "end" }, s.name));
    const a = x(t(s.started_at)), b = x(t(s.finished_at));
    const r = svg("rect", { x: a, y, width: Math.max(2, b - a), height: 16, fill: fillFor[s.status] || "#a16207" });
    r.append(svg("title", {}, `${s.name}: ${s.status} ${((t(s.finished_at) - t(s.started_at)) / 1000).toFixed(1)} s`));
    node.append(r);
  });
  node.append(svg("text", { x: W - pad.r, y: H - 4, "text-anchor": "end" }, `${((t1 - t0) / 1000).toFixed(0)} s`));
}

// ---- panels --------------------------------------------------------------------------------------------
let state = { overview: null };

function renderServing(o) {
  $("serving-version").textContent = o.version || "–";
  const healthy = o.engines.filter((e) => e.healthy).length;
  $("engines-summary").textContent = `${healthy}/${o.engines.length} engines in rotation`;
  $("swap-state").textContent = o.swap_running ? "a swap is running" : o.engine_error ? `engine error: ${o.engine_error}` : "";
  fill(
    $("engines").tBodies[0],
    o.engines.map((e) => el("tr", {}, el("td", {}, e.url), el("td", {}, e.version), el("td", { class: e.healthy ? "ok" : "bad" }, e.healthy ? "yes" : "no")))
  );
  const sel = $("promote-version");
  const keep = sel.value;
  const options = o.checkpoints
    .filter((c) => c.version !== o.version)
    .map((c) => el("option", { value: c.version }, `${c.version} (${c.status}${c.gate_passed === false ? ", gate FAILED" : c.gate_passed ? ", gate passed" : ""})`));
  sel.replaceChildren(...options);
  if ([...sel.options].some((op) => op.value === keep)) sel.value = keep;
  fill(
    $("swaps").tBodies[0],
    o.swaps.map((s) =>
      el(
        "tr",
        {},
        el("td", { class: "nowrap" }, fmtTime(s.started_at)),
        el("td", {}, s.kind),
        el("td", {}, `${s.from_version || "–"} → ${s.to_version}`),
        el("td", {}, s.strategy || ""),
        el("td", { class: s.status === "succeeded" ? "ok" : s.status === "failed" ? "bad" : "" }, s.status + (s.forced ? " (forced)" : "")),
        el("td", { class: "num" }, s.seconds === null ? "" : s.seconds.toFixed(2)),
        el("td", {}, s.by_whom || ""),
        el("td", {}, s.reason || "")
      )
    )
  );
  $("p-serving").dataset.ready = "1";
}

function renderCheckpoints(o) {
  const byParent = new Map();
  const versions = new Set(o.checkpoints.map((c) => c.version));
  for (const c of o.checkpoints) {
    const p = c.parent && versions.has(c.parent) ? c.parent : "";
    if (!byParent.has(p)) byParent.set(p, []);
    byParent.get(p).push(c);
  }
  const node = (c) => {
    const gate = c.gate_passed === true ? el("span", { class: "ok" }, "gate passed") : c.gate_passed === false ? el("span", { class: "bad" }, "gate FAILED") : el("span", { class: "muted" }, "no gate");
    const li = el(
      "li",
      { "data-version": c.version },
      el("b", {}, c.version),
      " ",
      el("span", { class: "badge" }, c.status),
      " ",
      el("span", { class: "muted" }, c.stage || ""),
      " · ",
      gate,
      c.has_report ? " · " : null,
      c.has_report ? el("a", { href: `/console/report/checkpoint/${encodeURIComponent(c.version)}`, target: "_blank", rel: "noopener" }, "training report") : null
    );
    const kids = byParent.get(c.version) || [];
    if (kids.length) li.append(el("ul", { class: "tree" }, ...kids.map(node)));
    return li;
  };
  $("lineage").replaceChildren(...(byParent.get("") || []).map(node));
  fill(
    $("gates").tBodies[0],
    o.gates.map((g) =>
      el(
        "tr",
        {},
        el("td", {}, g.version),
        el("td", {}, g.baseline || ""),
        el("td", {}, g.name),
        el("td", { class: g.passed ? "ok" : "bad" }, g.passed ? "pass" : "FAIL"),
        el("td", {}, fmtTime(g.recorded_at)),
        el("td", {}, el("a", { href: `/console/report/gate/${g.eval_id.split("/").map(encodeURIComponent).join("/")}`, target: "_blank", rel: "noopener" }, "report"))
      )
    )
  );
  $("p-checkpoints").dataset.ready = "1";
}

function renderIndex(o) {
  const s = o.index;
  if (!s) {
    $("index-state").textContent = "indexer not running";
    $("p-index").dataset.ready = "1";
    return;
  }
  $("index-state").textContent = s.state + (s.error ? `: ${s.error}` : "");
  const stat = (v, label) => el("div", {}, el("b", {}, v), el("span", {}, label));
  $("index-stats").replaceChildren(
    stat(s.chunks_total, "chunks (lexical)"),
    stat(s.chunks_embedded, "embedded (dense)"),
    stat(s.rate_chunks_s ? s.rate_chunks_s.toFixed(2) : "–", "chunks/s"),
    stat(s.eta_s ? `${Math.round(s.eta_s / 60)} min` : s.dense_pending ? "…" : "done", "ETA")
  );
  const frac = s.chunks_total ? s.chunks_embedded / s.chunks_total : 0;
  $("index-meter").style.setProperty("width", `${(100 * frac).toFixed(1)}%`);
  $("index-lines").replaceChildren(el("div", {}, s.last_lexical || ""), el("div", {}, s.last_dense || ""));
  $("p-index").dataset.ready = "1";
}

function renderTraffic(t) {
  $("traffic-window").textContent = `since ${fmtTime(t.since)} UTC · ${t.bucket_s} s buckets · ${t.total} requests`;
  const routes = [...new Set(t.buckets.flatMap((b) => Object.keys(b.routes)))].sort();
  const versions = [...new Set(t.buckets.flatMap((b) => Object.keys(b.versions)))].sort();
  legend($("legend-routes"), routes.map((r) => `route ${r || "(none)"}`));
  stacked($("chart-routes"), t.buckets, "routes", routes);
  legend($("legend-versions"), versions.map((v) => `version ${v || "(none)"}`));
  stacked($("chart-versions"), t.buckets, "versions", versions);
  $("p-traffic").dataset.ready = t.total ? "1" : "";

  const stat = (v, label) => el("div", {}, el("b", {}, v), el("span", {}, label));
  $("latency-stats").replaceChildren(
    stat(fmtMs(t.p50), "p50"),
    stat(fmtMs(t.p95), "p95"),
    stat(fmtMs(t.p99), "p99"),
    stat(pct(t.total ? t.errors / t.total : null), `errors (${t.errors})`)
  );
  const series = ["p50", "p95", "p99"].map((k) => ({ name: k, get: (b) => (b[k] === undefined ? null : b[k]) }));
  legend($("legend-latency"), ["p50", "p95", "p99", "error rate (lower chart)"]);
  lines($("chart-latency"), t.buckets, series, fmtMs);
  lines($("chart-errors"), t.buckets, [{ name: "error rate", get: (b) => (b.total ? b.errors / b.total : null) }], pct);
  $("p-latency").dataset.ready = t.total ? "1" : "";
}

function renderFeedback(rows) {
  const kinds = [
    ["thumbs_up", "thumbs up"],
    ["thumbs_down", "thumbs down"],
    ["edit", "edits"],
    ["regenerate", "regenerations"],
  ];
  legend($("legend-feedback"), kinds.map((k) => k[1]));
  hbars($("chart-feedback"), rows, kinds.map(([k, n]) => ({ name: n, get: (r) => r.rates[k] })));
  fill(
    $("feedback").tBodies[0],
    rows.map((r) =>
      el(
        "tr",
        { "data-version": r.version },
        el("td", {}, r.version),
        el("td", { class: "num" }, r.requests),
        ...["thumbs_up", "thumbs_down", "edit", "regenerate", "choice"].map((k) => el("td", { class: "num" }, `${r[k]} (${pct(r.rates[k])})`))
      )
    )
  );
  $("p-feedback").dataset.ready = rows.length ? "1" : "";
}

function filters() {
  const p = new URLSearchParams();
  for (const [k, id] of [["q", "f-q"], ["route", "f-route"], ["version", "f-version"], ["status", "f-status"], ["feedback", "f-feedback"]]) {
    if ($(id).value) p.set(k, $(id).value);
  }
  p.set("limit", "100");
  return p;
}

function facet(select, values, allLabel) {
  const keep = select.value;
  select.replaceChildren(el("option", { value: "" }, allLabel), ...values.map((v) => el("option", { value: v }, v)));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

async function loadRequests() {
  const r = await api(`/console/api/requests?${filters()}`);
  facet($("f-route"), r.facets.routes, "all routes");
  facet($("f-version"), r.facets.versions, "all versions");
  $("requests-count").textContent = `${r.items.length} of ${r.total}`;
  const rows = [];
  for (const it of r.items) {
    const tr = el(
      "tr",
      { class: "req", "data-request-id": it.request_id },
      el("td", { class: "nowrap" }, fmtTime(it.created_at)),
      el("td", { class: "nowrap" }, it.route || ""),
      el("td", { class: "nowrap" }, it.version || ""),
      el("td", { class: it.status >= 400 ? "bad nowrap" : "ok nowrap" }, it.status),
      el("td", { class: "num nowrap" }, it.latency_ms === null ? "" : Math.round(it.latency_ms)),
      el("td", {}, el("div", { class: "clip" }, it.message)),
      el("td", {}, it.sources.join(", ")),
      el("td", {}, it.feedback.join(", "))
    );
    const detail = el("tr", { class: "detail", hidden: true }, el("td", { colspan: 8 }, el("b", {}, "answer: "), it.response || it.error || ""));
    tr.addEventListener("click", () => (detail.hidden = !detail.hidden));
    rows.push(tr, detail);
  }
  fill($("requests").tBodies[0], rows);
  $("p-requests").dataset.ready = r.items.length ? "1" : "";
}

// The running (or last) canary: both arms' means per guarded signal, the difference with its always-valid
// interval (the decision boundary is 0: an interval wholly on the bad side stops the candidate).
async function loadCanary() {
  const c = (await api("/console/api/canary")).canary;
  const box = $("canary-body");
  if (!c) {
    box.replaceChildren(el("p", { class: "muted" }, "No canary has run (keel canary start VERSION, or cycle.canary.enabled)."));
    $("p-canary").dataset.ready = "1";
    return;
  }
  const f = c.figures || {};
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toPrecision(3));
  const rows = (f.signals || []).map((s) =>
    el(
      "tr",
      { class: s.worse ? "bad" : "" },
      el("td", { class: "nowrap" }, s.name),
      el("td", { class: "num nowrap" }, `${num(s.champion)} (${s.n_champion})`),
      el("td", { class: "num nowrap" }, `${num(s.candidate)} (${s.n_candidate})`),
      el("td", { class: "num nowrap" }, s.difference === null || s.difference === undefined ? "–" : `${num(s.difference)} [${num(s.low)}, ${num(s.high)}]`),
      el("td", { class: "num nowrap" }, s.p === null || s.p === undefined ? "–" : Number(s.p).toPrecision(2)),
      el("td", { class: "nowrap" }, s.worse ? "worse" : s.no_worse ? "no worse" : "")
    )
  );
  box.replaceChildren(
    el("p", { id: "canary-state" }, `${c.version} beside ${c.champion} on ${Math.round(c.share * 100)}% of conversations · ${c.status}` + (c.reason ? ` · ${c.reason}` : "")),
    el("p", { class: "muted" }, `requests: candidate ${f.n_candidate ?? 0}, champion ${f.n_champion ?? 0}`),
    el(
      "table",
      { id: "canary-signals" },
      el("thead", {}, el("tr", {}, ...["signal", "champion (n)", "candidate (n)", "candidate − champion [interval]", "p", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)
    )
  );
  $("p-canary").dataset.ready = "1";
}

async function loadCycles() {
  const c = await api("/console/api/cycles");
  const box = $("cycles-body");
  if (!c.cycles.length) {
    box.replaceChildren(el("p", { class: "muted" }, c.available ? "No cycle has run yet (keel cycle run). Gate decisions and training reports are in Checkpoints." : "The flywheel cycle is not installed; gate and training reports are in Checkpoints."));
    timeline($("chart-cycle"), []);
    $("p-cycles").dataset.ready = "1";
    return;
  }
  const table = el(
    "table",
    { id: "cycles" },
    el("thead", {}, el("tr", {}, ...["cycle", "status", "outcome", "trigger", "started", "steps", ""].map((h) => el("th", {}, h)))),
    // steps: how many finished of how many; the timeline below shows them one by one
    el(
      "tbody",
      {},
      ...c.cycles.map((cy) =>
        el(
          "tr",
          { "data-cycle-id": cy.cycle_id },
          el("td", { class: "nowrap" }, cy.cycle_id),
          el("td", { class: cy.status === "succeeded" ? "ok nowrap" : cy.status === "failed" ? "bad nowrap" : "nowrap" }, cy.status),
          el("td", { class: "nowrap" }, cy.outcome || cy.error || ""),
          el("td", { class: "nowrap" }, cy.trigger),
          el("td", { class: "nowrap" }, fmtTime(cy.started_at)),
          el("td", { class: "nowrap", title: cy.steps.map((s) => `${s.name}: ${s.status}`).join("\n") }, `${cy.steps.filter((s) => s.status === "done").length} done, ${cy.steps.filter((s) => s.status === "skipped").length} skipped, ${cy.steps.filter((s) => s.status === "failed").length} failed`),
          el("td", {}, cy.has_report ? el("a", { href: `/console/report/cycle/${encodeURIComponent(cy.cycle_id)}`, target: "_blank", rel: "noopener" }, "report") : "")
        )
      )
    )
  );
  const now = c.running
    ? el("p", { id: "cycle-running" }, `${c.running.cycle_id} is in ${c.running.step}` + (c.running.progress ? `: ${c.running.progress}` : ""))
    : "";
  box.replaceChildren(...[now, table, el("div", { class: "muted" }, `step timeline of ${c.cycles[0].cycle_id}`)].filter(Boolean));
  timeline($("chart-cycle"), c.cycles[0].steps);
  $("p-cycles").dataset.ready = "1";
}

async function refresh() {
  try {
    const [o, t, f] = await Promise.all([api("/console/api/overview"), api("/console/api/traffic?hours=6"), api("/console/api/feedback")]);
    state.overview = o;
    renderServing(o);
    renderCheckpoints(o);
    renderIndex(o);
    renderTraffic(t);
    renderFeedback(f);
    await Promise.all([loadCanary(), loadCycles(), document.activeElement && document.activeElement.id === "f-q" ? null : loadRequests()]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    if (e.message !== "logged out") say(`refresh failed: ${e.message}`, "err");
  }
}

// ---- actions -------------------------------------------------------------------------------------------
function say(text, kind = "done") {
  // kind: busy (a swap is on its way), done, err
  const s = $("action-status");
  s.textContent = text;
  s.className = kind === true ? "err" : kind;
}

function confirmThen(text, action) {
  const d = $("confirm");
  $("confirm-text").textContent = text;
  const yes = $("confirm-yes"), no = $("confirm-no");
  const done = (go) => {
    yes.onclick = no.onclick = null;
    d.close();
    if (go) action();
  };
  yes.onclick = () => done(true);
  no.onclick = () => done(false);
  d.showModal();
}

async function swap(path, body, what) {
  say(`${what}: waiting for the swap…`, "busy");
  for (const b of [$("promote"), $("rollback")]) b.disabled = true;
  try {
    const out = await api(path, { method: "POST", body: JSON.stringify(body) });
    say(`${out.kind === "rollback" ? "rolled back to" : "promoted"} ${out.to_version} (${out.strategy}, ${out.seconds.toFixed(2)} s; was ${out.from_version || "–"})`);
  } catch (e) {
    say(`${what} refused: ${e.message}`, "err");
  } finally {
    for (const b of [$("promote"), $("rollback")]) b.disabled = false;
    await refresh();
  }
}

function wire() {
  $("promote").addEventListener("click", () => {
    const version = $("promote-version").value;
    if (!version) return say("no other checkpoint to promote", "err");
    const force = $("promote-force").checked;
    const current = state.overview ? state.overview.version : "?";
    confirmThen(`Promote ${version} to serve all traffic instead of ${current}?${force ? " Its gate result is overridden (recorded as forced)." : ""}`, () =>
      swap("/console/api/promote", { version, force, reason: $("promote-reason").value || null }, `promote ${version}`)
    );
  });
  $("rollback").addEventListener("click", () => {
    const current = state.overview ? state.overview.version : "?";
    confirmThen(`Roll back from ${current} to the version that served before it?`, () =>
      swap("/console/api/rollback", { reason: $("promote-reason").value || null }, "rollback")
    );
  });
  $("request-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadRequests().catch((e) => say(e.message, "err"));
  });
}

wire();
refresh();
setInterval(refresh, 10000);
