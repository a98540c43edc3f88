// The xltop dashboard: the snapshot stream (/api/stream, one `xltop --json` snapshot per refresh)
// drives the process table and the selected process's summary and charts; /api/history fills the
// charts on load. Record text comes from other processes, so it is only ever written as text
// (textContent, attribute values), never as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "xltop-token";
const MIB = 1024 * 1024;

const state = {
  snapshot: null,
  selected: null,
  history: new Map(), // pid -> {time: [], tok_per_s: [], ...}
  maxSamples: 600,
  interval: 1,
  lastTime: 0,
  token: null,
};

const $ = (id) => document.getElementById(id);

// ---- the token: from the URL fragment the terminal printed, kept for this tab only ----

function loadToken() {
  const m = /(?:^#|&)token=([0-9a-fA-F]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    // Out of the address bar, the history and anything that would copy the URL.
    history.replaceState(null, "", location.pathname + location.search);
  }
  state.token = sessionStorage.getItem(TOKEN_KEY);
  showToken();
}

function showToken() {
  const unlocked = !!state.token;
  $("token-state").textContent = unlocked ? "actions unlocked" : "actions locked";
  $("token-state").classList.toggle("unlocked", unlocked);
  $("token-input").hidden = unlocked;
  $("token-submit").hidden = unlocked;
  $("token-forget").hidden = !unlocked;
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token-input").value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  state.token = t;
  $("token-input").value = "";
  showToken();
});
$("token-forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  showToken();
});

// ---- formats ----

function fmtBytes(b) {
  if (b == null) return "–";
  if (b >= 1024 * MIB) return (b / 1024 / MIB).toFixed(2) + " GiB";
  if (b >= 100 * MIB) return (b / MIB).toFixed(0) + " MiB";
  if (b >= MIB) return (b / MIB).toFixed(1) + " MiB";
  if (b > 0) return (b / MIB).toFixed(2) + " MiB";
  return "0 MiB";
}

function fmtRate(r) {
  return r >= 100 ? r.toFixed(0) : r.toFixed(1);
}

function fmtAge(secs) {
  const s = Math.max(0, Math.floor(secs));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function shortModel(m) {
  if (!m || m.startsWith("preset ")) return m || "";
  const parts = m.split(/[\\/]/).filter((p) => p);
  return parts.length ? parts[parts.length - 1] : m;
}

function modelLabel(r) {
  const name = shortModel(r.model);
  return r.dtype ? `${name} [${r.dtype} ${(r.weight_bytes / MIB).toFixed(0)} MiB]` : name;
}

// The fraction done, when the record says it.
function fraction(r) {
  if (r.total_tokens) return Math.min(1, r.tokens / r.total_tokens);
  if (r.progress != null) return Math.min(1, Math.max(0, r.progress));
  return null;
}

function progressText(r) {
  const f = fraction(r);
  if (r.total_tokens) return `${r.tokens.toLocaleString()} / ${r.total_tokens.toLocaleString()} tokens (${(f * 100).toFixed(f < 0.1 ? 2 : 1)}%)`;
  if (f != null) return `${(f * 100).toFixed(0)}%  ·  ${r.tokens.toLocaleString()} tokens`;
  return `${r.tokens.toLocaleString()} tokens`;
}

// Memory use as the watchdog's limits see it: the larger of the resident set and the pool.
function memoryUse(r) {
  return Math.max(r.rss_bytes, r.gpu_live_bytes + r.gpu_pooled_bytes);
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

// ---- history ----

const FIELDS = ["tok_per_s", "tokens", "rss_bytes", "gpu_live_bytes", "gpu_pooled_bytes", "gpu_peak_bytes"];

function addSnapshotToHistory(snap) {
  if (snap.time <= state.lastTime) return; // already in the history the page loaded with
  state.lastTime = snap.time;
  const live = new Set();
  for (const r of snap.processes) {
    live.add(r.pid);
    if (r.stale) continue;
    let h = state.history.get(r.pid);
    if (!h) {
      h = { time: [] };
      for (const f of FIELDS) h[f] = [];
      state.history.set(r.pid, h);
    }
    h.time.push(snap.time);
    for (const f of FIELDS) h[f].push(r[f]);
    if (h.time.length > state.maxSamples) {
      for (const k of Object.keys(h)) h[k].shift();
    }
  }
  for (const pid of [...state.history.keys()]) if (!live.has(pid)) state.history.delete(pid);
}

// ---- the table ----

function renderTable() {
  const snap = state.snapshot;
  const body = $("process-rows");
  const procs = snap.processes;
  const running = procs.filter((r) => !r.stale).length;
  $("counts").textContent = `${running} running${procs.length > running ? `, ${procs.length - running} stale` : ""}`;
  $("empty").hidden = procs.length > 0;
  $("processes").hidden = procs.length === 0;
  body.replaceChildren();
  for (const r of procs) {
    const tr = el("tr", { "data-pid": String(r.pid), tabindex: "0" });
    tr.id = `process-${r.pid}`;
    if (r.pid === state.selected) tr.classList.add("selected");
    if (r.stale) tr.classList.add("stale");
    const f = fraction(r);
    const phase = el("span", { class: "badge" }, r.stale ? "stale" : r.phase);
    phase.dataset.phase = r.stale ? "stale" : r.phase;
    const prog = el("div", { class: "cell-progress" });
    const bar = el("div", { class: "bar" });
    const fill = el("div", { class: "fill" });
    fill.style.width = `${((f ?? 0) * 100).toFixed(2)}%`;
    bar.append(fill);
    const tokensText = r.total_tokens ? `${r.tokens}/${r.total_tokens}` : f != null ? `${(f * 100).toFixed(0)}%` : String(r.tokens);
    prog.append(bar, el("span", {}, tokensText));
    const cells = [
      [el("td", { class: "num mono" }, String(r.pid))],
      [el("td", {}, r.command)],
      [(() => { const td = el("td"); td.append(phase); return td; })()],
      [(() => { const td = el("td"); td.append(prog); return td; })()],
      [el("td", { class: "num" }, fmtRate(r.tok_per_s))],
      [el("td", { class: "num" }, fmtBytes(r.rss_bytes))],
      [el("td", { class: "num" }, fmtBytes(r.gpu_live_bytes))],
      [el("td", { class: "num" }, fmtBytes(r.gpu_pooled_bytes))],
      [el("td", { class: "num" }, fmtBytes(r.gpu_peak_bytes))],
      [el("td", { class: "num" }, fmtAge(snap.time - r.started_unix))],
      [el("td", { class: "clip", title: r.model }, modelLabel(r))],
      [el("td", { class: "clip", title: `${r.adapter} (${r.backend})` }, r.adapter)],
    ];
    for (const [c] of cells) tr.append(c);
    tr.addEventListener("click", () => select(r.pid));
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(r.pid); });
    body.append(tr);
  }
}

function select(pid) {
  state.selected = pid;
  disarmKill();
  $("action-message").textContent = "";
  render();
}

document.addEventListener("keydown", (ev) => {
  if (!state.snapshot || ev.target instanceof HTMLInputElement) return;
  if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
  const pids = state.snapshot.processes.map((r) => r.pid);
  if (!pids.length) return;
  const i = Math.max(0, pids.indexOf(state.selected));
  const j = Math.min(pids.length - 1, Math.max(0, i + (ev.key === "ArrowDown" ? 1 : -1)));
  ev.preventDefault();
  select(pids[j]);
});

// ---- the selected process ----

function renderDetail() {
  const r = state.snapshot.processes.find((p) => p.pid === state.selected);
  $("detail").hidden = !r;
  if (!r) return;
  $("sel-title").textContent = `${r.command} · pid ${r.pid}`;
  $("sel-subtitle").textContent = `${modelLabel(r)}  ·  ${r.adapter}${r.backend ? ` (${r.backend})` : ""}`;
  const phase = $("sel-phase");
  phase.textContent = r.stale ? "stale" : r.phase;
  phase.dataset.phase = r.stale ? "stale" : r.phase;
  const f = fraction(r);
  $("sel-progress-fill").style.width = `${((f ?? 0) * 100).toFixed(2)}%`;
  $("sel-progress-text").textContent = progressText(r);
  const sysUsed = r.sys_total_bytes - r.sys_avail_bytes;
  const facts = [
    ["tok/s", fmtRate(r.tok_per_s)],
    ["running for", fmtAge(state.snapshot.time - r.started_unix)],
    ["memory use", fmtBytes(memoryUse(r))],
    ["soft / hard limit", r.hard_limit_bytes ? `${fmtBytes(r.soft_limit_bytes)} / ${fmtBytes(r.hard_limit_bytes)}` : "watchdog off"],
    ["system memory used", `${fmtBytes(sysUsed)} / ${fmtBytes(r.sys_total_bytes)}`],
    ["commands handled", r.commands_handled ? `${r.commands_handled} (last: ${r.last_command})` : "0"],
  ];
  const dl = $("sel-facts");
  dl.replaceChildren();
  for (const [k, v] of facts) {
    const d = el("div");
    d.append(el("dt", {}, k), el("dd", {}, v));
    dl.append(d);
  }
  $("btn-kill").disabled = r.stale;
  $("btn-empty-cache").disabled = r.stale;
  renderCharts(r);
}

// ---- charts (SVG) ----

// A step of 1, 2 or 5 times a power of ten giving about `count` intervals over `range`.
function niceStep(range, count) {
  const raw = range / count;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

function fmtAxisBytes(b, step) {
  if (step >= 1024 * MIB / 4) return (b / 1024 / MIB).toFixed(step >= 1024 * MIB ? 0 : 2) + " GiB";
  return (b / MIB).toFixed(step >= MIB ? 0 : step >= MIB / 10 ? 1 : 2) + " MiB";
}

function fmtAxisSeconds(s) {
  if (s < 1e-6) return "now";
  if (s >= 60 && Math.abs(s % 60) < 1e-6) return `-${Math.round(s / 60)}m`;
  return `-${+s.toFixed(1)}s`;
}

// The y ticks for [0, max]: on bytes, steps of powers of two MiB read better than decimal ones.
function yTicks(max, bytes) {
  let step;
  if (bytes) {
    step = MIB / 64;
    while (max / step > 5) step *= 2;
  } else {
    step = niceStep(max || 1, 4);
  }
  // Up to the first tick at or above `max`, which becomes the top of the scale.
  const ticks = [0];
  while (ticks[ticks.length - 1] < max) ticks.push(ticks.length * step);
  return { ticks, step };
}

// Draws `series` (each {label, color, values, area?, dash?}) over `times`, with horizontal
// `limits` ({label, color, value}) where they fall on the scale.
function drawChart(node, times, series, opts) {
  const width = Math.max(240, node.clientWidth || 400);
  const height = Math.max(140, node.clientHeight || 200);
  const m = { left: 64, right: 12, top: 10, bottom: 24 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.replaceChildren();
  const n = times.length;
  node.dataset.points = String(n);

  let max = 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  for (const l of opts.limits || []) if (l.value != null && l.value <= max * 3) max = Math.max(max, l.value);
  max = max > 0 ? max * 1.12 : opts.bytes ? MIB : 1;
  const { ticks, step } = yTicks(max, opts.bytes);
  max = ticks[ticks.length - 1];

  // The time axis spans the history (at least a few refreshes), so a young run fills the chart.
  const tEnd = n ? times[n - 1] : 0;
  const window = Math.max(5, 5 * state.interval, n ? tEnd - times[0] : 0);
  const x = (t) => m.left + w - ((tEnd - t) / window) * w;
  const y = (v) => m.top + h - (v / max) * h;

  const grid = svg("g", { class: "grid" });
  for (const v of ticks) {
    grid.append(svg("line", { x1: m.left, x2: m.left + w, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: m.left - 8, y: y(v) + 4, "text-anchor": "end" }, opts.bytes ? fmtAxisBytes(v, step) : String(+v.toFixed(6))));
  }
  const xStep = niceStep(window, 4) >= 60 ? Math.ceil(niceStep(window, 4) / 60) * 60 : niceStep(window, 4);
  for (let s = 0; s <= window + 1e-9; s += xStep) {
    const xx = x(tEnd - s);
    grid.append(svg("line", { class: "x", x1: xx, x2: xx, y1: m.top, y2: m.top + h }));
    // A label at the left edge would run into the y axis's.
    if (xx - m.left > 16 || s === 0) {
      grid.append(svg("text", { x: xx, y: height - 6, "text-anchor": s === 0 ? "end" : "middle" }, fmtAxisSeconds(s)));
    }
  }
  node.append(grid);

  // Limits far above the data would flatten it: they are named at the top instead of drawn.
  const above = (opts.limits || []).filter((l) => l.value != null && l.value > max);
  if (above.length) {
    const text = "↑ " + above.map((l) => `${l.label} ${fmtBytes(l.value)}`).join(" · ");
    node.append(svg("text", { class: "above", x: m.left + w - 6, y: m.top + 14, "text-anchor": "end" }, text));
  }
  for (const l of opts.limits || []) {
    if (l.value == null || l.value > max) continue;
    const g = svg("g", { class: "limit" });
    g.append(svg("line", { x1: m.left, x2: m.left + w, y1: y(l.value), y2: y(l.value), stroke: l.color, "stroke-dasharray": "6 4" }));
    g.append(svg("text", { x: m.left + 6, y: y(l.value) - 5, fill: l.color }, `${l.label} ${fmtBytes(l.value)}`));
    node.append(g);
  }

  if (n === 0) {
    node.append(svg("text", { class: "nodata", x: m.left + w / 2, y: m.top + h / 2, "text-anchor": "middle" }, "waiting for samples"));
  }
  for (const s of series) {
    if (!n) break;
    const pts = s.values.map((v, i) => `${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`);
    if (s.area) {
      node.append(svg("path", { class: "area", fill: s.color, d: `M${x(times[0]).toFixed(1)},${y(0)} L${pts.join(" L")} L${x(times[n - 1]).toFixed(1)},${y(0)} Z` }));
    }
    node.append(svg("polyline", { class: "line", stroke: s.color, points: pts.join(" "), "stroke-dasharray": s.dash || "none" }));
    if (n === 1 || s.dot !== false) {
      node.append(svg("circle", { class: "last", cx: x(times[n - 1]), cy: y(s.values[n - 1]), r: 3, fill: s.color }));
    }
  }
  node.append(svg("rect", { class: "frame", x: m.left, y: m.top, width: w, height: h }));
}

function legend(box, items) {
  box.replaceChildren();
  for (const it of items) {
    const span = el("span", { class: "item" });
    const sw = el("i", { class: it.dash ? "swatch dash" : "swatch" });
    sw.style.setProperty("--c", it.color);
    span.append(sw, document.createTextNode(`${it.label} `), el("b", {}, it.value));
    box.append(span);
  }
}

const COLORS = {
  tok: "#3b6fe0",
  live: "#7b4ddb",
  cached: "#c6a6f5",
  peak: "#d9467a",
  rss: "#139a74",
  pool: "#7b4ddb",
  soft: "#e0952b",
  hard: "#d43d3d",
};

function renderCharts(r) {
  const h = state.history.get(r.pid) || { time: [], tok_per_s: [], rss_bytes: [], gpu_live_bytes: [], gpu_pooled_bytes: [], gpu_peak_bytes: [] };
  const last = (a) => (a.length ? a[a.length - 1] : 0);

  drawChart($("chart-tok"), h.time, [{ color: COLORS.tok, values: h.tok_per_s, area: true }], {});
  $("now-tok").textContent = `${fmtRate(r.tok_per_s)} tok/s`;
  const rates = h.tok_per_s.filter((v) => v > 0);
  legend($("legend-tok"), [
    { label: "tok/s", color: COLORS.tok, value: fmtRate(r.tok_per_s) },
    { label: "mean", color: "#8a94a6", value: rates.length ? fmtRate(rates.reduce((a, b) => a + b, 0) / rates.length) : "–" },
    { label: "tokens", color: "#8a94a6", value: r.tokens.toLocaleString() },
  ]);

  const pooledTop = h.gpu_live_bytes.map((v, i) => v + h.gpu_pooled_bytes[i]);
  drawChart($("chart-gpu"), h.time, [
    { color: COLORS.cached, values: pooledTop, area: true, dot: false },
    { color: COLORS.live, values: h.gpu_live_bytes, area: true },
    { color: COLORS.peak, values: h.gpu_peak_bytes, dash: "5 4", dot: false },
  ], { bytes: true });
  $("now-gpu").textContent = fmtBytes(r.gpu_live_bytes + r.gpu_pooled_bytes);
  legend($("legend-gpu"), [
    { label: "live", color: COLORS.live, value: fmtBytes(r.gpu_live_bytes) },
    { label: "pooled", color: COLORS.cached, value: fmtBytes(r.gpu_pooled_bytes) },
    { label: "peak", color: COLORS.peak, value: fmtBytes(r.gpu_peak_bytes), dash: true },
  ]);

  drawChart($("chart-mem"), h.time, [
    { color: COLORS.rss, values: h.rss_bytes, area: true },
    { color: COLORS.pool, values: pooledTop, dash: "2 3", dot: false },
  ], {
    bytes: true,
    limits: [
      { label: "soft limit", color: COLORS.soft, value: r.soft_limit_bytes },
      { label: "hard limit", color: COLORS.hard, value: r.hard_limit_bytes },
    ],
  });
  const use = memoryUse(r);
  $("now-mem").textContent = r.hard_limit_bytes ? `${((use / r.hard_limit_bytes) * 100).toFixed(1)}% of the hard limit` : fmtBytes(use);
  legend($("legend-mem"), [
    { label: "resident", color: COLORS.rss, value: fmtBytes(r.rss_bytes) },
    { label: "GPU pool", color: COLORS.pool, value: fmtBytes(last(pooledTop)), dash: true },
    { label: "soft", color: COLORS.soft, value: r.soft_limit_bytes ? fmtBytes(r.soft_limit_bytes) : "off", dash: true },
    { label: "hard", color: COLORS.hard, value: r.hard_limit_bytes ? fmtBytes(r.hard_limit_bytes) : "off", dash: true },
  ]);
}

// ---- actions ----

let killArmed = null;

function disarmKill() {
  if (killArmed) clearTimeout(killArmed);
  killArmed = null;
  $("btn-kill").textContent = "Kill";
  $("btn-kill").classList.remove("armed");
}

function say(text, kind) {
  const m = $("action-message");
  m.textContent = text;
  m.dataset.kind = kind || "info";
}

async function act(action) {
  const pid = state.selected;
  if (pid == null) return;
  if (!state.token) {
    say("Actions need the token xltop printed in its terminal: paste it at the top right.", "error");
    $("token-input").focus();
    return;
  }
  try {
    const resp = await fetch(`/api/processes/${pid}/${action}`, {
      method: "POST",
      headers: { "X-Xltop-Token": state.token },
      cache: "no-store",
    });
    const body = await resp.json().catch(() => ({ message: resp.statusText }));
    say(body.message || resp.statusText, resp.ok ? "ok" : "error");
    if (resp.status === 403 && /token/.test(body.message || "")) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      showToken();
    }
  } catch (e) {
    say(`the request failed: ${e}`, "error");
  }
}

$("btn-empty-cache").addEventListener("click", () => act("empty-cache"));
$("btn-kill").addEventListener("click", () => {
  if (!killArmed) {
    // Two clicks: a stray one does not end a run.
    $("btn-kill").textContent = "Confirm kill";
    $("btn-kill").classList.add("armed");
    killArmed = setTimeout(disarmKill, 4000);
    return;
  }
  disarmKill();
  act("kill");
});

// ---- the data ----

function render() {
  const snap = state.snapshot;
  if (!snap) return;
  const pids = snap.processes.map((r) => r.pid);
  if (!pids.includes(state.selected)) {
    const running = snap.processes.find((r) => !r.stale);
    state.selected = running ? running.pid : pids.length ? pids[0] : null;
  }
  $("runtime-dir").textContent = snap.dir;
  renderTable();
  renderDetail();
}

function onSnapshot(snap) {
  state.snapshot = snap;
  addSnapshotToHistory(snap);
  render();
}

function setConn(kind, text) {
  $("conn").dataset.state = kind;
  $("conn-text").textContent = text;
}

async function start() {
  loadToken();
  try {
    const [hist, snap] = await Promise.all([
      fetch("/api/history", { cache: "no-store" }).then((r) => r.json()),
      fetch("/api/snapshot", { cache: "no-store" }).then((r) => r.json()),
    ]);
    state.interval = hist.interval_s;
    state.maxSamples = hist.max_samples;
    for (const [pid, h] of Object.entries(hist.processes)) {
      state.history.set(Number(pid), h);
      if (h.time.length) state.lastTime = Math.max(state.lastTime, h.time[h.time.length - 1]);
    }
    $("footer-refresh").textContent = `refresh every ${state.interval} s`;
    onSnapshot(snap);
  } catch (e) {
    setConn("down", "cannot reach xltop");
  }
  const events = new EventSource("/api/stream");
  events.onopen = () => setConn("live", "live");
  events.onerror = () => setConn("down", "reconnecting");
  events.onmessage = (ev) => {
    setConn("live", "live");
    onSnapshot(JSON.parse(ev.data));
  };
}

window.addEventListener("resize", () => render());
start();
