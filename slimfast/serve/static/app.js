// The comparison page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Each codec is one POST /v1/compare, so the server codes them in parallel on its workers and
// the page shows each result as it arrives.
"use strict";

const CODECS = [
  { id: "slimfast", label: "slimfast" },
  { id: "webp", label: "WebP" },
  { id: "avif", label: "AVIF" },
  { id: "jpeg", label: "JPEG" },
];
const BPP_RANGE = [0.05, 3];
const $ = (sel) => document.querySelector(sel);

const state = {
  file: null, width: 0, height: 0, originalUrl: null, maxPixels: 4000000, available: {},
  zoom: 1, results: {}, run: 0, abort: null, split: 50,
};

function fmt(x, digits) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

function status(text, isError) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

// ---- target size: a slider in bpp or KB (1000 bytes) -------------------------------------
function unit() {
  return document.querySelector("input[name=unit]:checked").value;
}

function pixels() {
  return state.width * state.height || 768 * 512;
}

function bppToKb(bpp) { return bpp * pixels() / 8 / 1000; }
function kbToBpp(kb) { return kb * 1000 * 8 / pixels(); }

function setSlider(bpp) {
  const s = $("#target");
  if (unit() === "bpp") {
    Object.assign(s, { min: BPP_RANGE[0], max: BPP_RANGE[1], step: 0.01 });
    s.value = bpp;
  } else {
    const lo = bppToKb(BPP_RANGE[0]), hi = bppToKb(BPP_RANGE[1]);
    Object.assign(s, { min: lo.toFixed(1), max: hi.toFixed(1), step: 0.1 });
    s.value = bppToKb(bpp).toFixed(1);
  }
  showTarget();
}

function targetBpp() {
  const v = Number($("#target").value);
  return unit() === "bpp" ? v : kbToBpp(v);
}

function showTarget() {
  const v = Number($("#target").value);
  const other = state.width ? (unit() === "bpp" ? ` (${bppToKb(v).toFixed(1)} KB)` : ` (${kbToBpp(v).toFixed(3)} bpp)`) : "";
  $("#target-value").textContent = unit() === "bpp" ? `${v.toFixed(2)} bpp${other}` : `${v.toFixed(1)} KB${other}`;
}

function targetQuery() {
  const v = Number($("#target").value);
  return unit() === "bpp" ? `target_bpp=${v}` : `max_bytes=${Math.max(1, Math.floor(v * 1000))}`;
}

// ---- models and codecs ---------------------------------------------------------------------
async function loadModels() {
  const [models, info] = await Promise.all([fetch("/v1/models").then((r) => r.json()),
                                           fetch("/v1/compare").then((r) => r.json())]);
  state.available = info.codecs;
  state.maxPixels = info.max_pixels;
  $("#drop-limit").textContent = `(at most ${(info.max_pixels / 1e6).toFixed(1)} Mpx)`;
  const select = $("#model");
  for (const m of models.models) {
    const opt = new Option(m.widths ? `${m.name} (widths ${[...m.widths].sort((a, b) => a - b).join(" ")})` : m.name, m.name);
    opt.selected = m.name === models.default;
    opt.dataset.widths = m.widths ? m.widths.join(" ") : "";
    opt.dataset.family = m.family;
    select.add(opt);
  }
  showModel();
}

function showModel() {
  const opt = $("#model").selectedOptions[0];
  if (!opt) return;
  $("#model-widths").textContent = opt.dataset.widths
    ? `slimmable: one model, widths ${opt.dataset.widths.split(" ").sort((a, b) => a - b).join(", ")}`
    : `family ${opt.dataset.family}: its rate points`;
}

// ---- the input image -----------------------------------------------------------------------
function takeFile(file) {
  if (!file) return;
  state.file = file;
  if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
  state.originalUrl = URL.createObjectURL(file);
  const probe = new Image();
  probe.onload = () => {
    state.width = probe.naturalWidth;
    state.height = probe.naturalHeight;
    if (state.width * state.height > state.maxPixels) {
      status(`${file.name} is ${state.width}x${state.height}: above this page's limit of ${state.maxPixels} pixels.`, true);
      return;
    }
    setSlider(targetBpp());
    compareAll();
  };
  probe.onerror = () => {  // a format this browser cannot show (TIFF, say): the server still reads it
    state.width = state.height = 0;
    state.originalUrl = null;
    compareAll();
  };
  probe.src = state.originalUrl;
}

function setupDrop() {
  const drop = $("#drop");
  $("#file").addEventListener("change", (e) => takeFile(e.target.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => takeFile(e.dataTransfer.files[0]));
}

// ---- running the comparison ----------------------------------------------------------------
function compareAll() {
  if (!state.file) return;
  if (state.abort) state.abort.abort();
  state.abort = new AbortController();
  const run = ++state.run;
  state.results = {};
  $("#results").hidden = false;
  $("#results tbody").replaceChildren();
  $("#cards").replaceChildren();
  status(`Coding ${state.file.name} at ${$("#target-value").textContent} with each codec…`);
  const model = encodeURIComponent($("#model").value);
  const jobs = CODECS.map((c) => {
    addRow(c);
    if (state.available[c.id] === false) {
      return Promise.resolve(show(c, { unavailable: `${c.label} is not available on this server (its Pillow has no ${c.id} support)` }));
    }
    const url = `/v1/compare?codec=${c.id}&${targetQuery()}` + (c.id === "slimfast" ? `&model=${model}` : "");
    return fetch(url, { method: "POST", body: state.file, signal: state.abort.signal,
                        headers: { "Content-Type": state.file.type || "application/octet-stream" } })
      .then(async (r) => {
        const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
        if (run === state.run) show(c, r.ok ? body : { failed: body.error || `HTTP ${r.status}` });
      })
      .catch((e) => { if (run === state.run && e.name !== "AbortError") show(c, { failed: String(e) }); });
  });
  Promise.all(jobs).then(() => {
    if (run !== state.run) return;
    const done = Object.values(state.results).filter((r) => r.image).length;
    status(`${done} of ${CODECS.length} codecs made a file within the target. Drag the divider, zoom, or move the slider.`);
    fillSwipeSelects();
  });
}

function addRow(c) {
  const tr = document.createElement("tr");
  tr.id = `row-${c.id}`;
  tr.className = "pending";
  tr.dataset.state = "pending";
  tr.innerHTML = `<td>${c.label}</td><td colspan="7">coding…</td>`;
  $("#results tbody").append(tr);
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  card.id = `card-${c.id}`;
  card.querySelector(".name").textContent = c.label;
  card.querySelector(".note").textContent = "coding…";
  $("#cards").append(card);
}

function show(c, r) {
  state.results[c.id] = r;
  const tr = $(`#row-${c.id}`), card = $(`#card-${c.id}`);
  const problem = r.unavailable || r.failed;
  tr.className = tr.dataset.state = r.unavailable ? "unavailable" : r.failed ? "failed" : "done";
  card.className = `card ${tr.className}`;
  if (problem) {
    tr.innerHTML = `<td>${c.label}</td><td colspan="7"></td>`;
    tr.cells[1].textContent = problem;
    card.querySelector(".note").textContent = problem;
    return;
  }
  if (!state.width) { state.width = r.width; state.height = r.height; showTarget(); }
  const cells = [c.label, r.setting, r.bytes, fmt(r.bpp, 3), fmt(r.psnr, 2), fmt(r.msssim, 4),
                 fmt(r.encode_ms, 1), fmt(r.decode_ms, 1)];
  tr.replaceChildren(...cells.map((v) => Object.assign(document.createElement("td"), { textContent: v })));
  const img = card.querySelector("img");
  img.src = r.image;
  img.alt = `${c.label}, ${r.bytes} bytes`;
  img.onload = () => sizeImage(img);
  const link = card.querySelector(".download");
  link.hidden = false;
  link.href = `data:${r.media_type};base64,${r.file}`;
  link.download = `image.${{ slimfast: "sfi", webp: "webp", avif: "avif", jpeg: "jpg" }[c.id]}`;
  card.querySelector(".note").textContent =
    `${r.bytes} bytes (target ${r.limit_bytes}), ${fmt(r.bpp, 3)} bpp, ${fmt(r.psnr, 2)} dB, ${r.setting}`;
  if (r.points) showPoints(card.querySelector(".points"), r);
}

function showPoints(el, r) {
  el.replaceChildren(document.createTextNode(r.widths ? `${r.model}, widths: ` : `${r.model}'s family: `));
  for (const p of r.points) {
    const span = document.createElement("span");
    span.textContent = `${p.label.replace("width ", "")} (${p.bytes} B)`;
    span.className = p.chosen ? "chosen" : p.fits ? "" : "over";
    span.title = p.fits ? "fits the target" : "above the target";
    el.append(span, " ");
  }
}

// ---- zoom: whole device pixels per image pixel, so 100% is pixel-exact on any screen -----
function sizeImage(img) {
  if (!img.naturalWidth) return;
  const scale = state.zoom / (window.devicePixelRatio || 1);
  img.style.width = `${img.naturalWidth * scale}px`;
  img.style.height = `${img.naturalHeight * scale}px`;
}

function setZoom(z) {
  state.zoom = z;
  for (const b of document.querySelectorAll("#zoom button")) b.classList.toggle("on", Number(b.dataset.zoom) === z);
  for (const img of document.querySelectorAll(".viewport img")) sizeImage(img);
}

// Panning one view pans them all, so that the same pixels stay side by side.
function syncScroll() {
  let busy = false;
  document.addEventListener("scroll", (e) => {
    const src = e.target;
    if (busy || !(src instanceof Element) || !src.classList.contains("viewport")) return;
    busy = true;
    for (const v of document.querySelectorAll(".viewport")) {
      if (v !== src) { v.scrollLeft = src.scrollLeft; v.scrollTop = src.scrollTop; }
    }
    requestAnimationFrame(() => { busy = false; });
  }, true);
}

// ---- the swipe view ------------------------------------------------------------------------
function imageOf(id) {
  if (id === "original") return state.originalUrl;
  return state.results[id] && state.results[id].image;
}

function fillSwipeSelects() {
  const ids = [...(state.originalUrl ? ["original"] : []), ...CODECS.map((c) => c.id).filter((id) => imageOf(id))];
  if (ids.length < 2) { $("#swipe-section").hidden = true; return; }
  for (const [sel, pick] of [["#left", ids.includes("slimfast") ? "slimfast" : ids[0]],
                             ["#right", ids.find((id) => id !== "slimfast" && id !== "original") || ids[1]]]) {
    const s = $(sel), keep = ids.includes(s.value) ? s.value : pick;
    s.replaceChildren(...ids.map((id) => new Option(id === "original" ? "original" : CODECS.find((c) => c.id === id).label, id)));
    s.value = keep;
  }
  $("#swipe-section").hidden = false;
  showSwipe();
}

function showSwipe() {
  for (const [img, sel] of [["#swipe-left", "#left"], ["#swipe-right", "#right"]]) {
    const el = $(img);
    el.onload = () => sizeImage(el);
    el.src = imageOf($(sel).value);
  }
  placeDivider();
}

function placeDivider() {
  $("#swipe-left").style.clipPath = `inset(0 ${100 - state.split}% 0 0)`;
  $("#divider").style.left = `${state.split}%`;
}

function setupSwipe() {
  const stage = $("#stage");
  let dragging = false;
  const move = (e) => {
    const box = stage.getBoundingClientRect();
    state.split = Math.min(100, Math.max(0, (e.clientX - box.left) / box.width * 100));
    placeDivider();
  };
  stage.addEventListener("pointerdown", (e) => { dragging = true; stage.setPointerCapture(e.pointerId); move(e); });
  stage.addEventListener("pointermove", (e) => { if (dragging) move(e); });
  stage.addEventListener("pointerup", () => { dragging = false; });
  $("#left").addEventListener("change", showSwipe);
  $("#right").addEventListener("change", showSwipe);
}

function setup() {
  setupDrop();
  setupSwipe();
  syncScroll();
  for (const b of document.querySelectorAll("#zoom button")) b.addEventListener("click", () => setZoom(Number(b.dataset.zoom)));
  for (const r of document.querySelectorAll("input[name=unit]")) {
    r.addEventListener("change", () => setSlider(unit() === "kb" ? Number($("#target").value) : kbToBpp(Number($("#target").value))));
  }
  $("#target").addEventListener("input", showTarget);
  $("#target").addEventListener("change", compareAll);
  $("#model").addEventListener("change", () => { showModel(); compareAll(); });
  window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`).addEventListener("change", () => setZoom(state.zoom));
  loadModels().catch((e) => status(`cannot reach the server: ${e}`, true));
}

setup();
