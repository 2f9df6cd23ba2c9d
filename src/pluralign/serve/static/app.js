// pluralign web page: sliders per objective -> preference -> POST /v1/completions (streamed).
"use strict";

const state = { model: null, objectives: [], method: null, front: null, busy: 0, inflight: null };
const $ = (id) => document.getElementById(id);
const fmt = (x) => (Math.round(x * 100) / 100).toFixed(2);

function sliderValues() {
  return state.objectives.map((name) => Number($("slider-" + name).value));
}

// Slider values divided by their sum; null when every slider is at zero.
function currentPreference() {
  const values = sliderValues();
  const total = values.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const pref = {};
  state.objectives.forEach((name, i) => { pref[name] = values[i] / total; });
  return pref;
}

function showWeights() {
  const pref = currentPreference();
  state.objectives.forEach((name) => {
    $("weight-" + name).textContent = pref ? fmt(pref[name]) : "–";
  });
  markFrontPoint();
}

function buildSliders() {
  const box = $("sliders");
  box.innerHTML = "";
  state.objectives.forEach((name) => {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: 0, max: 100, step: 1, value: 50, id: "slider-" + name });
    input.setAttribute("aria-label", "weight of " + name);
    const weight = document.createElement("span");
    weight.className = "weight";
    weight.id = "weight-" + name;
    input.addEventListener("input", showWeights);
    input.addEventListener("change", () => { if ($("prompt").value.trim()) generate(); });
    row.append(label, input, weight);
    box.append(row);
  });
  showWeights();
}

function requestBody(prompt, preference, stream) {
  const body = { model: state.model, prompt, preference, stream,
                 max_tokens: Number($("max-tokens").value) || 1 };
  const t = Number($("temperature").value);
  if (t > 0) body.temperature = t;
  return body;
}

async function errorMessage(resp) {
  try { return (await resp.json()).error.message; } catch (e) { return resp.status + " " + resp.statusText; }
}

function setBusy(delta) {
  state.busy += delta;
  $("compare").disabled = state.busy > 0;
}

// Stream one response into the response box token by token, reading OpenAI-style server-sent events
// as the server sends them (each event carries the newly generated text).
async function generate() {
  const out = $("response"), status = $("status");
  const preference = currentPreference();
  const prompt = $("prompt").value;
  out.classList.remove("error");
  if (!preference) { out.textContent = "Move at least one slider above zero."; out.classList.add("error"); return; }
  if (!prompt.trim()) { out.textContent = "Write a prompt first."; out.classList.add("error"); return; }
  const label = state.objectives.map((n) => n + "=" + fmt(preference[n])).join(", ");
  status.textContent = "generating at " + label + " …";
  if (state.inflight) state.inflight.abort();  // a newer slider position replaces the running request
  const controller = new AbortController();
  state.inflight = controller;
  out.textContent = "";
  out.dataset.state = "streaming";
  $("generate").disabled = true;
  const started = performance.now();
  try {
    const resp = await fetch("/v1/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody(prompt, preference, true)), signal: controller.signal,
    });
    if (!resp.ok) throw new Error(await errorMessage(resp));
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data:")) continue;
        const data = event.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);  // generation failed after the stream began
        if (chunk.choices && chunk.choices.length && !controller.signal.aborted) out.textContent += chunk.choices[0].text || "";
      }
    }
    if (controller.signal.aborted) return;
    status.textContent = "steered by " + label + " · " + Math.round(performance.now() - started) + " ms";
    out.dataset.state = "done";
  } catch (err) {
    if (controller.signal.aborted) return;
    out.textContent = "Error: " + err.message;
    out.classList.add("error");
    out.dataset.state = "error";
    status.textContent = "";
  } finally {
    if (state.inflight === controller) { state.inflight = null; $("generate").disabled = false; }
  }
}

// Preferences for the compare view: evenly spaced for two objectives, vertices + centre otherwise.
function comparePreferences(count) {
  const k = state.objectives.length, prefs = [];
  if (k === 2) {
    for (let i = 0; i < count; i++) { const w = i / (count - 1); prefs.push([w, 1 - w]); }
  } else {
    for (let i = 0; i < k; i++) prefs.push(state.objectives.map((_, j) => (i === j ? 1 : 0)));
    prefs.push(state.objectives.map(() => 1 / k));
  }
  return prefs.map((w) => Object.fromEntries(state.objectives.map((n, i) => [n, w[i]])));
}

async function compare() {
  const prompt = $("prompt").value, grid = $("compare-results");
  if (!prompt.trim()) { grid.textContent = "Write a prompt first."; return; }
  const prefs = comparePreferences(Number($("compare-count").value));
  grid.innerHTML = "";
  const cells = prefs.map((pref) => {
    const col = document.createElement("div");
    col.className = "col";
    const head = document.createElement("h3");
    head.textContent = state.objectives.map((n) => n + " " + fmt(pref[n])).join(" · ");
    const text = document.createElement("div");
    text.textContent = "…";
    col.append(head, text);
    grid.append(col);
    return text;
  });
  setBusy(1);
  try {
    await Promise.all(prefs.map(async (pref, i) => {
      const resp = await fetch("/v1/completions", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(requestBody(prompt, pref, false)),
      });
      if (!resp.ok) { cells[i].textContent = "Error: " + (await errorMessage(resp)); cells[i].classList.add("error"); return; }
      cells[i].textContent = (await resp.json()).choices[0].text;
    }));
  } finally {
    setBusy(-1);
  }
}

// --- Pareto plot (SVG) from front.json ---
const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

function drawFront() {
  const front = state.front, box = $("front-plot");
  if (!front || !front.fronts || !front.fronts.length) return;
  const names = front.objectives;
  const W = 520, H = 360, m = { l: 60, r: 20, t: 16, b: 48 };
  const pts = front.fronts.flatMap((f) => f.points.map((p) => p.scores));
  const xs = pts.map((s) => s[0]), ys = pts.map((s) => s[1]);
  const pad = (lo, hi) => { const d = (hi - lo) || 1; return [lo - 0.08 * d, hi + 0.08 * d]; };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs)), [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  box.innerHTML = "";
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Pareto front" }, box);
  el("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "#fafbfc", stroke: "#ccd" }, svg);
  for (let i = 0; i <= 4; i++) {
    const vx = x0 + (i / 4) * (x1 - x0), vy = y0 + (i / 4) * (y1 - y0);
    el("text", { x: X(vx), y: H - m.b + 16, "text-anchor": "middle", "font-size": 11, fill: "#556" }, svg).textContent = vx.toFixed(2);
    el("text", { x: m.l - 6, y: Y(vy) + 4, "text-anchor": "end", "font-size": 11, fill: "#556" }, svg).textContent = vy.toFixed(2);
  }
  el("text", { x: (W + m.l) / 2, y: H - 10, "text-anchor": "middle", "font-size": 13 }, svg).textContent = names[0];
  el("text", { x: 16, y: (H - m.b) / 2, "text-anchor": "middle", "font-size": 13, transform: `rotate(-90 16 ${(H - m.b) / 2})` }, svg).textContent = names[1];
  const palette = ["#2f6fdf", "#e07b39", "#3a9d5d", "#9b59b6", "#c0392b", "#16a085"];
  front.fronts.forEach((f, fi) => {
    const mine = f.method === state.method;
    const color = mine ? palette[0] : ((f.method === "sft" || f.method === "base") ? "#999" : palette[1 + (fi % (palette.length - 1))]);
    const sorted = [...f.points].sort((a, b) => a.scores[0] - b.scores[0]);
    el("polyline", { points: sorted.map((p) => `${X(p.scores[0])},${Y(p.scores[1])}`).join(" "),
                     fill: "none", stroke: color, "stroke-width": mine ? 2 : 1.2, "stroke-dasharray": mine ? "" : "4 3" }, svg);
    f.points.forEach((p) => {
      const c = el("circle", { cx: X(p.scores[0]), cy: Y(p.scores[1]), r: mine ? 5 : 3.5, fill: color, class: "point" }, svg);
      if (mine) c.dataset.preference = JSON.stringify(p.preference);
      el("title", {}, c).textContent = `${f.method} · preference [${p.preference.map(fmt).join(", ")}] · scores [${p.scores.map((s) => s.toFixed(3)).join(", ")}]`;
      if (mine && p.preference.length === state.objectives.length) c.addEventListener("click", () => setSliders(p.preference));
    });
    const hv = typeof f.hypervolume === "number" ? ` (HV ${f.hypervolume.toFixed(3)})` : "";
    el("text", { x: W - m.r - 6, y: m.t + 16 + 15 * fi, "text-anchor": "end", "font-size": 12, fill: color }, svg).textContent = f.method + hv;
  });
  state.marker = el("circle", { r: 9, fill: "none", stroke: "#000", "stroke-width": 1.5, visibility: "hidden" }, svg);
  markFrontPoint();
}

// Ring the point of this model's front whose preference is closest to the sliders.
function markFrontPoint() {
  if (!state.marker) return;
  const pref = currentPreference();
  const points = [...document.querySelectorAll("#front-plot circle.point")].filter((c) => c.dataset.preference);
  if (!pref || !points.length) { state.marker.setAttribute("visibility", "hidden"); return; }
  const w = state.objectives.map((n) => pref[n]);
  let best = null, bestD = Infinity;
  points.forEach((c) => {
    const p = JSON.parse(c.dataset.preference);
    const d = p.reduce((acc, x, i) => acc + (x - w[i]) ** 2, 0);
    if (d < bestD) { bestD = d; best = c; }
  });
  state.marker.setAttribute("cx", best.getAttribute("cx"));
  state.marker.setAttribute("cy", best.getAttribute("cy"));
  state.marker.setAttribute("visibility", "visible");
}

function setSliders(weights) {
  state.objectives.forEach((name, i) => { $("slider-" + name).value = Math.round(weights[i] * 100); });
  showWeights();
  if ($("prompt").value.trim()) generate();
}

async function init() {
  const info = (await (await fetch("/v1/models")).json()).data[0];
  state.model = info.id;
  state.objectives = info.objectives;
  state.method = info.method;
  $("model-info").textContent = `${info.id} · method ${info.method} · objectives ${info.objectives.join(", ")}`;
  $("max-tokens").max = info.limits.max_tokens;
  $("max-tokens").value = Math.min(48, info.limits.max_tokens);
  buildSliders();
  $("generate").addEventListener("click", generate);
  $("compare").addEventListener("click", compare);
  if (info.front) {
    const resp = await fetch("/front.json");
    if (resp.ok) {
      state.front = await resp.json();
      if (state.front.objectives && state.front.objectives.length >= 2) {
        $("front-view").hidden = false;
        drawFront();
      }
    }
  }
  document.body.dataset.ready = "true";
}

init().catch((err) => { $("model-info").textContent = "could not load the model: " + err.message; });
