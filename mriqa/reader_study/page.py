"""The reader page: HTML/CSS (``INDEX_HTML``) and its script (``APP_JS``), kept in Python so that any install
of the package (not only an editable one) can serve them.

Behaviour: a reader name field (remembered in localStorage); two images side by side, synchronised zoom
(mouse wheel, around the pointer) and pan (drag) applied to both, ``0`` / double-click resets; choices by
keys (left arrow = left better, right arrow = right better, down arrow or space = tie) or buttons; a progress
bar (this reader's judgments / the study's target per reader). Every choice gets a UUID
(``crypto.randomUUID``) and is queued in localStorage *before* it is sent; it leaves the queue only when the
server has answered (stored, or already stored). While the server is unreachable the queue is retried every
second, also after a page reload, so a killed server loses nothing the page accepted, and a retried POST is
deduplicated by the UUID on the server. ``window.mriqaSent`` lists the ids of this page's choices (tests).
"""

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reader study: {{STUDY}}</title>
<style>
 body { margin: 0; font: 14px system-ui, sans-serif; background: #111; color: #ddd; }
 header { display: flex; gap: 1em; align-items: center; padding: 6px 12px; background: #222; }
 header input { width: 12em; } #status { margin-left: auto; color: #fc6; }
 progress { width: 16em; } main { display: flex; gap: 8px; padding: 8px; height: calc(100vh - 120px); }
 .pane { flex: 1; overflow: hidden; position: relative; background: #000; cursor: grab; }
 .pane img { position: absolute; left: 0; top: 0; width: 100%; height: 100%; object-fit: contain;
             transform-origin: 0 0; image-rendering: pixelated; user-select: none; -webkit-user-drag: none; }
 footer { display: flex; gap: 1em; justify-content: center; padding: 6px; }
 footer button { font-size: 16px; padding: 6px 18px; } .hint { color: #888; }
</style></head>
<body>
<header><b>{{STUDY}}</b>
 <label>Reader <input id="reader" autocomplete="off" placeholder="your name"></label>
 <button id="start">Start</button>
 <progress id="progress" value="0" max="1"></progress>
 <span><span id="count">0</span> / <span id="target">?</span> (all readers: <span id="total">0</span>)</span>
 <span id="status"></span></header>
<main><div class="pane" id="pane-left"><img id="img-left" alt="left image"></div>
      <div class="pane" id="pane-right"><img id="img-right" alt="right image"></div></main>
<footer><button id="b-left">&larr; left is better</button><button id="b-tie">&darr; / space: tie</button>
 <button id="b-right">right is better &rarr;</button>
 <span class="hint">wheel: zoom, drag: pan (both images), 0: reset</span></footer>
<script src="/app.js"></script>
</body></html>
"""

APP_JS = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const QKEY = "mriqa-pending:" + location.host;
let reader = localStorage.getItem("mriqa-reader") || "";
let pair = null, shownAt = 0, busy = false, started = false;
let view = {s: 1, x: 0, y: 0};
window.mriqaSent = [];

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
const queue = () => JSON.parse(localStorage.getItem(QKEY) || "[]");
const saveQueue = (q) => localStorage.setItem(QKEY, JSON.stringify(q));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function status(text) { $("status").textContent = text; }
function counts(r) {
  $("count").textContent = r.reader_count; $("total").textContent = r.total;
  if (r.target !== undefined) { $("target").textContent = r.target; $("progress").max = Math.max(1, r.target); }
  $("progress").value = r.reader_count;
}

async function flush() {            // send every queued judgment; retry until the server answers
  for (;;) {
    const q = queue();
    if (!q.length) { status(""); return; }
    const j = q[0];
    try {
      const resp = await fetch("/api/judgments", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify(j)});
      const body = await resp.json();
      if (resp.ok) { if (j.reader === reader) counts(body); }
      else status("not stored: " + (body.error || resp.status));   // a 4xx never succeeds: drop it
      saveQueue(queue().filter((x) => x.id !== j.id));
    } catch (e) { status("server unreachable, retrying ..."); await sleep(1000); }
  }
}

async function next() {
  for (;;) {
    try {
      const resp = await fetch("/api/next?reader=" + encodeURIComponent(reader));
      const body = await resp.json();
      if (!resp.ok) { status(body.error || "error"); return; }
      counts(body);
      if (body.done) { pair = null; status("no other pair to show"); return; }
      await show(body);
      return;
    } catch (e) { status("server unreachable, retrying ..."); await sleep(1000); }
  }
}

function load(img, url) {
  return new Promise((res) => { img.onload = img.onerror = () => res(); img.src = url; });
}
async function show(p) {
  await Promise.all([load($("img-left"), p.left.url), load($("img-right"), p.right.url)]);
  pair = p; shownAt = performance.now(); status("");
  document.body.dataset.pair = p.left.id + "|" + p.right.id;
}

async function choose(choice) {
  if (busy || !pair || !started) return;
  busy = true;
  const j = {id: uuid(), reader: reader, left: pair.left.id, right: pair.right.id, choice: choice,
             response_ms: Math.round(performance.now() - shownAt)};
  const q = queue(); q.push(j); saveQueue(q); window.mriqaSent.push(j.id);
  pair = null;
  try { await flush(); await next(); } finally { busy = false; }
}

async function start() {
  const name = $("reader").value.trim();
  if (!name) { status("enter your name first"); return; }
  reader = name; localStorage.setItem("mriqa-reader", name); started = true;
  $("reader").blur(); busy = true;
  try { await flush(); await next(); } finally { busy = false; }
}

// synchronised zoom and pan: one transform for both images
function apply() {
  for (const id of ["img-left", "img-right"])
    $(id).style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.s})`;
}
function reset() { view = {s: 1, x: 0, y: 0}; apply(); }
for (const pane of [$("pane-left"), $("pane-right")]) {
  pane.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = pane.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
    const f = Math.exp(-e.deltaY * 0.0015), s = Math.min(40, Math.max(1, view.s * f)), k = s / view.s;
    view = {s: s, x: px - k * (px - view.x), y: py - k * (py - view.y)}; apply();
  }, {passive: false});
  pane.addEventListener("mousedown", (e) => {
    e.preventDefault();
    let lx = e.clientX, ly = e.clientY;
    const move = (m) => { view.x += m.clientX - lx; view.y += m.clientY - ly; lx = m.clientX; ly = m.clientY; apply(); };
    const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); };
    window.addEventListener("mousemove", move); window.addEventListener("mouseup", up);
  });
  pane.addEventListener("dblclick", reset);
}

document.addEventListener("keydown", (e) => {
  if (e.target === $("reader")) { if (e.key === "Enter") start(); return; }
  const c = {ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", " ": "tie"}[e.key];
  if (c) { e.preventDefault(); choose(c); } else if (e.key === "0") reset();
});
$("start").addEventListener("click", start);
$("b-left").addEventListener("click", () => choose("left"));
$("b-right").addEventListener("click", () => choose("right"));
$("b-tie").addEventListener("click", () => choose("tie"));
$("reader").value = reader;
if (queue().length) flush();        // judgments left over from before a reload or a server restart
"""
