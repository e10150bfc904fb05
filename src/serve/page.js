// windtunnel serve: the live page of one sweep. Polls the JSON endpoints (progress every 2 s,
// curves every 3 s: only the runs that changed, fits every 10 s) and draws on canvases, so a
// thousand runs stay smooth. No external resources.
"use strict";
const SWEEP = document.body.dataset.sweep;
const api = (path) => fetch(`/api/sweeps/${encodeURIComponent(SWEEP)}/${path}`).then((r) => (r.ok ? r.json() : Promise.reject(r.status)));
const curves = new Map(); // run id -> curve
let curvesVersion = 0;
let oracle = null;
let fitsKey = null;
let runsSort = { key: "id", dir: 1 };
let runRows = [];

const fmt = (x, d = 4) => (x === null || x === undefined || !isFinite(x) ? "–" : Number(x).toFixed(d));
const si = (x) => {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, u] of units) if (Math.abs(x) >= v) return (x / v).toPrecision(3) + u;
  return x.toPrecision(3);
};
const duration = (s) => {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

// Viridis-like colours by model size (small: purple, large: yellow), as the report's charts.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];
function sizeColors(ns) {
  const sizes = [...new Set(ns)].sort((a, b) => a - b);
  const colors = new Map();
  sizes.forEach((n, i) => colors.set(n, VIRIDIS[Math.round((i / Math.max(1, sizes.length - 1)) * (VIRIDIS.length - 1))]));
  return colors;
}

async function refreshProgress() {
  const p = await api("progress");
  if (p.runs === undefined) {
    document.getElementById("progress").innerHTML = `<p class=bad>${esc(p.error || "no plan.json yet")}</p>`;
    return;
  }
  const pct = p.flops_total > 0 ? (100 * p.flops_done) / p.flops_total : 0;
  const stalled = p.stalled > 0 ? ` · <span class=bad>${p.stalled} stalled</span>` : "";
  document.getElementById("progress").innerHTML =
    `<table><tr><th>runs</th><th>pending</th><th>running</th><th>done</th><th>diverged</th><th>failed</th><th>interrupted</th></tr>` +
    `<tr><td>${p.runs}</td><td>${p.pending}</td><td>${p.running}</td><td>${p.done}</td><td>${p.diverged}</td><td>${p.failed}</td><td>${p.interrupted}</td></tr></table>` +
    `<div class=bar><div style="width:${pct.toFixed(2)}%"></div></div>` +
    `<p>${pct.toFixed(1)}% of ${p.flops_total.toExponential(3)} FLOPs · ETA ${duration(p.eta_s)}${stalled}` +
    (p.error ? ` · <span class=bad>${esc(p.error)}</span>` : "") + `</p>`;
  const rows = p.active
    .map(
      (a) =>
        `<tr class="${a.stalled ? "bad" : ""}"><td><a href="/files/${encodeURIComponent(SWEEP)}/${a.id}/metrics.jsonl">${a.id}</a></td><td>${a.kind}</td>` +
        `<td>${a.width}</td><td>${si(a.n)}</td><td>${a.step}/${a.steps}</td><td>${fmt(a.train_loss)}</td><td>${fmt(a.eval_loss)}</td>` +
        `<td>${si(a.tokens_per_s)}</td><td>${duration(a.quiet_s)}${a.stalled ? " (stalled)" : ""}</td></tr>`,
    )
    .join("");
  document.getElementById("active").innerHTML = p.active.length
    ? `<table><tr><th>running</th><th>kind</th><th>width</th><th>N</th><th>step</th><th>train loss</th><th>eval loss</th><th>tokens/s</th><th>last metrics</th></tr>${rows}</table>`
    : `<p class=muted>no run is training now</p>`;
}

async function refreshCurves() {
  const c = await api(`curves?since=${curvesVersion}`);
  for (const run of c.runs) curves.set(run.id, run);
  curvesVersion = c.version;
  oracle = c.oracle_loss;
  draw();
}

function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) ticks.push(v);
    }
  }
  if (ticks.length < 3) {
    const step = (Math.log10(hi) - Math.log10(lo)) / 4;
    for (let i = 0; i <= 4; i++) ticks.push(10 ** (Math.log10(lo) + i * step));
  }
  return [...new Set(ticks)];
}

function drawChart(canvas, xIndex, xLabel) {
  const which = document.getElementById("which").value; // "eval" or "train"
  const yIndex = which === "eval" ? 3 : 2;
  const runs = [...curves.values()];
  const colors = sizeColors(runs.map((r) => r.n));
  const usable = (p) => p[yIndex] !== null && p[yIndex] > 0 && p[xIndex] > 0;
  // A branch is drawn from its trunk's point at the branch point (its last logged one there).
  const start = (r) => {
    const trunk = r.trunk && curves.get(r.trunk);
    if (!trunk || r.from_tokens === null) return [];
    const before = trunk.points.filter((p) => p[0] <= r.from_tokens && usable(p));
    return before.length ? [before[before.length - 1]] : [];
  };
  const series = runs
    .map((r) => ({ run: r, pts: start(r).concat(r.points.filter(usable)).map((p) => [p[xIndex], p[yIndex]]) }))
    .filter((s) => s.pts.length > 0);
  const ctx = canvas.getContext("2d");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px 'DejaVu Sans', Verdana, sans-serif";
  ctx.fillStyle = "#222";
  if (!series.length) {
    ctx.fillText(`no ${which} losses logged yet`, 20, 30);
    canvas.dataset.drawn = "0";
    return;
  }
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const s of series) for (const [x, y] of s.pts) [x0, x1, y0, y1] = [Math.min(x0, x), Math.max(x1, x), Math.min(y0, y), Math.max(y1, y)];
  if (oracle && which === "eval") y0 = Math.min(y0, oracle);
  if (x1 <= x0) x1 = x0 * 2;
  if (y1 <= y0) y1 = y0 * 1.1;
  [y0, y1] = [y0 / 1.02, y1 * 1.02];
  const m = { l: 64, r: 16, t: 12, b: 44 };
  const X = (x) => m.l + ((Math.log(x) - Math.log(x0)) / (Math.log(x1) - Math.log(x0))) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((Math.log(y) - Math.log(y0)) / (Math.log(y1) - Math.log(y0))) * (height - m.t - m.b);
  ctx.strokeStyle = "#ddd";
  ctx.lineWidth = 1;
  ctx.textAlign = "center";
  for (const t of logTicks(x0, x1)) {
    ctx.beginPath(); ctx.moveTo(X(t), m.t); ctx.lineTo(X(t), height - m.b); ctx.stroke();
    ctx.fillText(si(t), X(t), height - m.b + 16);
  }
  ctx.textAlign = "right";
  for (const t of logTicks(y0, y1)) {
    ctx.beginPath(); ctx.moveTo(m.l, Y(t)); ctx.lineTo(width - m.r, Y(t)); ctx.stroke();
    ctx.fillText(t.toPrecision(3), m.l - 6, Y(t) + 4);
  }
  ctx.textAlign = "center";
  ctx.fillText(xLabel, (m.l + width - m.r) / 2, height - 8);
  ctx.save(); ctx.translate(14, (m.t + height - m.b) / 2); ctx.rotate(-Math.PI / 2);
  ctx.fillText(`${which} loss (nats/token)`, 0, 0); ctx.restore();
  ctx.lineWidth = series.length > 200 ? 1 : 1.6;
  for (const s of series) {
    ctx.strokeStyle = colors.get(s.run.n);
    ctx.globalAlpha = s.run.state === "diverged" ? 0.35 : 0.9;
    ctx.beginPath();
    s.pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    if (which === "eval") {
      ctx.fillStyle = colors.get(s.run.n);
      const [x, y] = s.pts[s.pts.length - 1];
      ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 2 * Math.PI); ctx.fill();
    }
  }
  ctx.globalAlpha = 1;
  if (oracle && which === "eval") {
    ctx.strokeStyle = "#000"; ctx.setLineDash([6, 4]);
    ctx.beginPath(); ctx.moveTo(m.l, Y(oracle)); ctx.lineTo(width - m.r, Y(oracle)); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = "#000"; ctx.textAlign = "right";
    ctx.fillText(`oracle loss ${oracle.toFixed(3)}`, width - m.r - 4, Y(oracle) - 5);
  }
  canvas.dataset.drawn = String(series.length);
  const legend = [...colors.entries()].sort((a, b) => a[0] - b[0]);
  document.getElementById("legend").innerHTML = legend.map(([n, c]) => `<span><i style="background:${c}"></i>N = ${si(n)}</span>`).join("");
}

function draw() {
  drawChart(document.getElementById("by-tokens"), 0, "tokens D");
  drawChart(document.getElementById("by-flops"), 1, "training FLOPs");
  document.getElementById("curve-count").textContent = `${curves.size} runs with metrics`;
}

async function refreshFits() {
  const f = await api("fits");
  const note = f.computing ? "refitting…" : f.finished_runs ? `from ${f.finished_runs} finished runs` : "no finished run yet";
  document.getElementById("fits-note").textContent = note;
  const key = `${f.finished_runs}:${f.html ? f.html.length : 0}:${f.error || ""}`;
  if (key === fitsKey) return;
  fitsKey = key;
  document.getElementById("fits").innerHTML = (f.html || "") + (f.error ? `<p class=muted>${esc(f.error)}</p>` : "");
}

async function refreshRuns() {
  runRows = await api("runs");
  renderRuns();
}

function renderRuns() {
  const k = runsSort.key;
  const rows = [...runRows].sort((a, b) => (a[k] === b[k] ? 0 : (a[k] ?? Infinity) < (b[k] ?? Infinity) ? -runsSort.dir : runsSort.dir));
  const cols = ["id", "kind", "grid", "state", "width", "depth", "n", "tokens", "lr", "batch_size", "seed", "step", "eval_loss"];
  const head = cols.map((c) => `<th data-key="${c}">${c}${c === k ? (runsSort.dir > 0 ? " ▲" : " ▼") : ""}</th>`).join("") + "<th>files</th>";
  const file = (r, f) => `<a href="/files/${encodeURIComponent(SWEEP)}/${r.id}/${f}">${f.split(".")[0]}</a>`;
  const body = rows
    .map((r) => {
      const cells = cols.map((c) => `<td>${c === "eval_loss" ? fmt(r[c]) : c === "n" || c === "tokens" ? si(r[c]) : c === "step" ? `${r.step}/${r.steps}` : esc(r[c])}</td>`);
      return `<tr class="${r.state}">${cells.join("")}<td>${file(r, "metrics.jsonl")} ${file(r, "worker.log")} ${file(r, "config.json")}</td></tr>`;
    })
    .join("");
  document.getElementById("runs").innerHTML = `<table class=sortable><tr>${head}</tr>${body}</table>`;
}

document.getElementById("runs").addEventListener("click", (e) => {
  const key = e.target.dataset && e.target.dataset.key;
  if (!key) return;
  runsSort = { key, dir: runsSort.key === key ? -runsSort.dir : 1 };
  renderRuns();
});
document.getElementById("which").addEventListener("change", draw);
window.addEventListener("resize", draw);

const every = (ms, f) => {
  const tick = () => f().catch(() => {}).finally(() => setTimeout(tick, ms));
  tick();
};
every(2000, refreshProgress);
every(3000, refreshCurves);
every(5000, refreshRuns);
every(10000, refreshFits);
