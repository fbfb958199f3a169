// Fixative's page: thin glue over the engine's HTTP API (the same one the editor plug-ins use).
// The session cookie authenticates; every changing request also sends X-Fixative-Page, which a form on
// another site cannot. Settings live in localStorage; images never leave this computer.
"use strict";

const SETTINGS_KEY = "fixative.settings.v1";
const IN_FLIGHT = 4; // jobs handed to the engine at once; the rest wait here (the engine's queue is bounded)
const PAGE = { "X-Fixative-Page": "1" };
const TARGET_TEXT = {
  style: ["Style image (optional)", "The look to cloak toward; without one, the built-in style above is used."],
  concept: ["Anchor image (needed)", "A picture of the other concept (e.g. a cat, to poison 'dog')."],
  edit: ["Target image (optional)", "What edits should drift toward; without one, the pattern above is used."],
};
const FIELD_ORDER = [
  "method", "intensity", "quality", "format", "max_side", "concept", "style", "pattern", "steps", "seed",
];
const jobs = []; // {file, card, id, state, url}

const $ = (selector, root = document) => root.querySelector(selector);

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) {
    const message = body && body.error ? body.error : `the engine answered ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// --- settings, built from the engine's options schema -------------------------------------------
function buildFields(choices) {
  const holder = $("#fields");
  holder.textContent = "";
  for (const name of FIELD_ORDER) {
    const spec = choices[name];
    if (!spec) continue;
    const field = document.createElement("div");
    field.className = "field";
    field.dataset.name = name;
    const label = document.createElement("label");
    label.htmlFor = `opt-${name}`;
    label.textContent = spec.label || name[0].toUpperCase() + name.slice(1);
    let input;
    if (spec.choices) {
      input = document.createElement("select");
      for (const choice of spec.choices) {
        const option = new Option(choice.label, choice.value);
        input.add(option);
      }
      input.value = spec.default;
    } else if (spec.ge !== undefined) {
      input = document.createElement("input");
      input.type = "number";
      input.min = spec.ge;
      if (spec.le !== undefined && spec.le < 1e9) input.max = spec.le;
      input.placeholder = spec.default === null ? spec.unset || "preset's" : String(spec.default);
      if (spec.default !== null) input.value = spec.default;
    } else {
      input = document.createElement("input");
      input.type = "text";
      if (spec.suggest) {
        const list = document.createElement("datalist");
        list.id = `suggest-${name}`;
        for (const value of spec.suggest) list.append(new Option(value, value));
        field.append(list);
        input.setAttribute("list", list.id);
        input.placeholder = spec.suggest[0];
      }
    }
    input.id = `opt-${name}`;
    input.name = name;
    const help = document.createElement("p");
    help.className = "help";
    help.id = `help-${name}`;
    help.textContent = spec.help;
    input.setAttribute("aria-describedby", help.id);
    field.append(label, input, help);
    holder.append(field);
  }
  restoreSettings();
  $("#settings").addEventListener("change", () => { saveSettings(); showMethodFields(); });
  showMethodFields();
}

function currentSettings() {
  const values = {};
  for (const input of $("#fields").querySelectorAll("input, select")) {
    if (input.value !== "") values[input.name] = input.type === "number" ? Number(input.value) : input.value;
  }
  return values;
}

function saveSettings() {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(currentSettings()));
}

function restoreSettings() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"); } catch { saved = {}; }
  for (const [name, value] of Object.entries(saved)) {
    const input = document.getElementById(`opt-${name}`);
    if (!input) continue;
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === String(value))) continue;
    input.value = value;
  }
}

function showMethodFields() {
  const method = ($("#opt-method") || {}).value || "style";
  const only = { concept: "concept", style: "style", pattern: "edit" };
  for (const [name, wanted] of Object.entries(only)) {
    const field = $(`.field[data-name="${name}"]`);
    if (field) field.hidden = method !== wanted;
  }
  const [label, help] = TARGET_TEXT[method] || TARGET_TEXT.style;
  $("#target-label").textContent = label;
  $("#target-help").textContent = help;
}

function jobOptions() {
  const values = currentSettings();
  const method = values.method || "style";
  for (const [name, wanted] of Object.entries({ concept: "concept", style: "style", pattern: "edit" })) {
    if (method !== wanted) delete values[name];
  }
  return { ...values, check: true, preview: true };
}

// --- images: a card each, a small client-side queue ---------------------------------------------
function addFiles(files) {
  for (const file of files) {
    const card = $("#card").content.firstElementChild.cloneNode(true);
    $(".name", card).textContent = file.name;
    $(".progress", card).setAttribute("aria-label", `Progress of ${file.name}`);
    $(".cancel", card).setAttribute("aria-label", `Cancel ${file.name}`);
    const job = { file, card, id: null, state: "waiting", events: null, resultUrl: null };
    $(".cancel", card).addEventListener("click", () => cancel(job));
    $("#results").append(card);
    jobs.push(job);
  }
  pump();
  updateBulk();
}

function pump() {
  const active = jobs.filter((j) => j.state === "submitting" || j.state === "queued" || j.state === "running");
  for (const job of jobs) {
    if (active.length >= IN_FLIGHT) break;
    if (job.state !== "waiting") continue;
    active.push(job);
    submit(job);
  }
}

async function submit(job) {
  setState(job, "submitting", "Uploading");
  const form = new FormData();
  form.append("file", job.file, job.file.name);
  form.append("options", JSON.stringify(jobOptions()));
  const target = $("#target-file").files[0];
  if (target) form.append("target", target, target.name);
  try {
    const status = await api("/jobs", { method: "POST", body: form, headers: PAGE });
    job.id = status.id;
    if (job.state === "cancelling") { await cancel(job); return; }
    follow(job);
  } catch (error) {
    fail(job, error.message);
  }
}

function follow(job) {
  const events = new EventSource(`/jobs/${job.id}/events`);
  job.events = events;
  events.addEventListener("status", (event) => {
    const status = JSON.parse(event.data);
    if (status.state === "queued") {
      setState(job, "queued", status.position ? `Queued (${status.position} ahead)` : "Queued");
    } else if (status.state === "running") {
      const eta = status.eta ? `, about ${Math.ceil(status.eta)} s left` : "";
      const text = status.doing
        ? `Measuring ${status.doing}…` // after the last step: the report's figures
        : `Step ${status.step || 0} of ${status.total || "?"}${eta}`;
      setState(job, "running", text, status.progress);
    } else if (status.state === "done") {
      events.close();
      finish(job);
    } else if (status.state === "failed") {
      events.close();
      fail(job, status.error || "the protection failed");
    } else if (status.state === "cancelled") {
      events.close();
      setState(job, "cancelled", "Cancelled");
      pump();
    }
  });
  events.addEventListener("gone", () => { events.close(); fail(job, "the engine forgot this job"); });
  events.onerror = () => {
    if (job.state === "queued" || job.state === "running") {
      events.close();
      fail(job, "lost the connection to the engine");
    }
  };
}

async function cancel(job) {
  if (job.state === "waiting") { setState(job, "cancelled", "Cancelled"); pump(); return; }
  if (job.state === "submitting") { job.state = "cancelling"; return; }
  if (!job.id || !["queued", "running", "cancelling"].includes(job.state)) return;
  setState(job, "cancelling", "Cancelling…");
  try {
    await api(`/jobs/${job.id}/cancel`, { method: "POST", headers: PAGE });
  } catch (error) {
    fail(job, error.message);
  }
}

function setState(job, state, text, progress) {
  job.state = state;
  job.card.dataset.state = state;
  $(".status", job.card).textContent = text;
  const bar = $(".progress", job.card);
  if (progress !== undefined && progress !== null) bar.value = progress;
  if (state === "done") bar.value = 1;
  $(".cancel", job.card).hidden = !["waiting", "submitting", "queued", "running", "cancelling"].includes(state);
  updateBulk();
}

function fail(job, message) {
  setState(job, "failed", "Failed");
  const error = $(".error", job.card);
  error.textContent = message;
  error.hidden = false;
  pump();
}

async function finish(job) {
  try {
    const result = await api(`/jobs/${job.id}/result`);
    showResult(job, result);
    setState(job, "done", "Protected");
  } catch (error) {
    fail(job, error.message);
  }
  pump();
}

// --- results: comparison, zoom, figures, download -----------------------------------------------
const MIME = { png: "image/png", jpg: "image/jpeg", webp: "image/webp", tif: "image/tiff" };

function showResult(job, result) {
  const card = job.card;
  const bytes = Uint8Array.from(atob(result.image_base64), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], { type: MIME[result.format] || "application/octet-stream" });
  job.resultUrl = URL.createObjectURL(blob);
  job.beforeUrl = URL.createObjectURL(job.file);
  for (const img of card.querySelectorAll("img.before")) img.src = job.beforeUrl;
  for (const img of card.querySelectorAll("img.after")) img.src = job.resultUrl;
  const model = result.report && result.report.model_view_png_base64;
  const modelImg = $(".model-view", card);
  if (model) modelImg.src = `data:image/png;base64,${model}`;
  else {
    modelImg.remove();
    $(".model-caption", card).textContent = (result.report && result.report.model_view_note) || "No preview.";
  }
  const stem = job.file.name.replace(/\.[^.]+$/, "") || "artwork";
  const link = $(".download", card);
  link.href = job.resultUrl;
  link.download = `${stem}.protected.${result.format === "jpg" ? "jpg" : result.format}`;
  link.setAttribute("aria-label", `Download the protected ${job.file.name}`);
  const slider = $(".slider", card);
  slider.addEventListener("input", () => $(".compare", card).style.setProperty("--pos", `${slider.value}%`));
  const name = `view-${Math.random().toString(36).slice(2)}`;
  for (const radio of card.querySelectorAll(".view input")) {
    radio.name = name;
    radio.addEventListener("change", () => setView(card, radio.value));
  }
  $(".zoom", card).addEventListener("change", (event) => setZoom(card, event.target.value));
  setZoom(card, "fit");
  showFigures(card, result);
  $(".result", card).hidden = false;
}

function setView(card, view) {
  $(".viewport", card).hidden = view !== "slider";
  $(".slider-label", card).hidden = view !== "slider";
  $(".side", card).hidden = view !== "side";
  $(".model", card).hidden = view !== "model";
}

function setZoom(card, zoom) {
  card.dataset.zoom = zoom;
  for (const img of card.querySelectorAll("img")) {
    // in the comparison the protected copy lies over the original at its size (a copy made smaller
    // with the longest-side setting is shown stretched to it, so the two line up)
    const sized = img.closest(".compare") ? $(".compare img.before", card) : img;
    const apply = () => {
      img.style.width = zoom === "fit" ? "" : `${sized.naturalWidth * Number(zoom)}px`;
      img.style.height = zoom === "fit" ? "" : `${sized.naturalHeight * Number(zoom)}px`;
    };
    if (img.complete && img.naturalWidth && sized.complete && sized.naturalWidth) apply();
    else {
      img.addEventListener("load", apply, { once: true });
      if (sized !== img) sized.addEventListener("load", apply, { once: true });
    }
  }
}

const pct = (x) => (x === null || x === undefined ? "not measured" : `${Math.round(100 * x)} %`);
const num = (x, digits = 2) => (x === null || x === undefined ? "not measured" : Number(x).toFixed(digits));

function showFigures(card, result) {
  const report = result.report || {};
  const first = (report.encoders || [])[0] || {};
  const seen = report.perceptual || {};
  const rows = [
    ["Strength", `${num(report.strength)} (matched noise ${num(first.noise_strength)})`],
    ["What the model sees", `${pct(first.decoded_share)} of the way to the target (noise ${pct(first.noise_decoded_share)})`],
    ["Visibility", `PSNR ${num(seen.psnr_db, 1)} dB, SSIM ${num(seen.ssim, 3)}, flat areas ${num(seen.flat_rms_255, 1)}/255 RMS, ${pct(seen.jnd_exceed_share)} of pixels over 1 JND, largest change ${num(seen.linf_255, 0)}/255`],
  ];
  const check = result.check || {};
  if (check.error) rows.push(["Check", check.error]);
  else if (check.verdict) rows.push(["Check", `${check.verdict}: ${check.verdict_reason || ""}`]);
  const given = (x) => x !== null && x !== undefined;
  const null_ = (x) => (given(x) ? ` (noise ${pct(x)})` : "");  // matched noise through the same cleaner
  for (const step of check.robustness || []) {
    if (step.skipped) rows.push([`After ${step.purification}`, `not measured (${step.skipped})`]);
    else {
      const seen = given(step.decoded_share)
        ? `; the model sees ${pct(step.decoded_share)} of the way${null_(step.noise_decoded_share)}` : "";
      const left = `${num(step.strength)} left${given(step.noise_strength) ? `, matched noise ${num(step.noise_strength)}` : ""}`;
      rows.push([`After ${step.purification}`, `${pct(step.share_kept)} of the strength kept (${left})${seen}`]);
    }
  }
  for (const note of report.notes || []) {  // what the engine said of this file: weak, not measured, transfer
    const weak = note.startsWith("weak:");
    rows.push([weak ? "Weak" : "Note", weak ? note.slice(5).trim() : note]);
  }
  const list = $(".figures", card);
  list.textContent = "";
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  const definitions = report.definitions || {};
  $(".definitions", card).textContent = [definitions.strength, definitions.decoded_share, definitions.noise]
    .filter(Boolean).map((d) => d.replace(/\s+/g, " ")).join(" · ");
}

// --- bulk actions ------------------------------------------------------------------------------
function updateBulk() {
  $("#cancel-all").disabled = !jobs.some((j) => ["waiting", "submitting", "queued", "running"].includes(j.state));
  $("#download-all").disabled = !jobs.some((j) => j.state === "done");
}

async function downloadAll() {
  const ids = jobs.filter((j) => j.state === "done").map((j) => j.id);
  try {
    const blob = await api("/jobs/archive", {
      method: "POST",
      body: JSON.stringify({ ids }),
      headers: { ...PAGE, "Content-Type": "application/json" },
    });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "fixative-protected.zip";
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    $("#engine").textContent = `Could not make the zip: ${error.message}`;
  }
}

// --- the engine and its encoder ----------------------------------------------------------------
async function getEncoder() {
  const button = $("#get-encoder");
  const stop = $("#cancel-encoder");
  const bar = $("#encoder-progress");
  button.disabled = true;
  stop.hidden = false;
  bar.hidden = false;
  let cancelled = false;
  stop.onclick = async () => { cancelled = true; await api("/models/get/taef2", { method: "DELETE", headers: PAGE }); };
  try {
    let state = await api("/models/get/taef2", { method: "POST", headers: PAGE });
    while (state.state === "running") {
      if (state.total) bar.value = state.done / state.total;
      $("#encoder-status").textContent = state.file ? `Downloading ${state.file}…` : "Starting the download…";
      await new Promise((resolve) => setTimeout(resolve, 300));
      state = await api("/models/get/taef2");
    }
    if (state.state === "done") {
      $("#encoder-missing").hidden = true;
      await connect();
      return;
    }
    $("#encoder-status").textContent = state.state === "cancelled" || cancelled
      ? "Download cancelled; nothing was kept." : `Download failed: ${state.error}`;
  } catch (error) {
    $("#encoder-status").textContent = `Download failed: ${error.message}`;
  }
  button.disabled = false;
  stop.hidden = true;
}

async function connect() {
  try {
    const [health, options, models] = await Promise.all([api("/health"), api("/options?host=web"), api("/models")]);
    $("#engine").textContent = `Engine ${health.version} running on ${health.devices.join(", ")}`;
    if (!$("#fields").children.length) buildFields(options.choices);
    $("#encoder-missing").hidden = models.length > 0;
  } catch (error) {
    $("#engine").textContent = `The engine does not answer: ${error.message}`;
  }
}

function wireDropZone() {
  const drop = $("#drop");
  const input = $("#files");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addFiles([...event.dataTransfer.files]);
  });
  input.addEventListener("change", () => { addFiles([...input.files]); input.value = ""; });
}

document.addEventListener("DOMContentLoaded", () => {
  wireDropZone();
  $("#cancel-all").addEventListener("click", () => jobs.forEach((job) => cancel(job)));
  $("#download-all").addEventListener("click", downloadAll);
  $("#get-encoder").addEventListener("click", getEncoder);
  connect();
});
