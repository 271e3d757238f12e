/* The synth web page: four steps (upload, train, generate, evaluate) and the
   library, over the gateway's HTTP API. Vanilla JS, no build step. */
"use strict";

const $ = (id) => document.getElementById(id);
const WATCH_KEY = "synth.watch";
const EVAL_KEY = "synth.evaluation";
const KEY_KEY = "synth.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const state = { info: null, datasets: [], models: [], watch: null, watchAbort: null, evaluation: null, evaluationAbort: null };

/* ---------------------------------------------------------------- API */
class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.status || "";
    this.details = error.details || [];
    this.requestId = error.request_id || "";
  }
  get violations() {
    const bad = this.details.find((d) => (d["@type"] || "").endsWith("BadRequest"));
    return bad ? bad.field_violations || [] : [];
  }
  get reason() {
    const info = this.details.find((d) => (d["@type"] || "").endsWith("ErrorInfo"));
    return info ? info.reason : "";
  }
}

/* The gateway's CSRF token, filled into the page it served: every request that
   changes something sends it back, or the gateway refuses it (403). */
const CSRF_TOKEN = (document.querySelector('meta[name="synth-csrf"]') || {}).content || "";
const CHANGES = new Set(["POST", "PUT", "PATCH", "DELETE"]);

function authHeaders(extra, method) {
  const headers = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY_KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (CHANGES.has(method)) headers["X-Synth-CSRF"] = CSRF_TOKEN;
  return headers;
}

// A refusal of the key a request was sent with asks for a key, unless the user has
// entered another one since (a slow answer to an old key must not hide the new one).
function refusedKey(status, sentKey, message) {
  if (status === 401 && sentKey === sessionStorage.getItem(KEY_KEY)) showAuth(message);
}

async function errorFrom(response, sentKey) {
  let body = {};
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  const err = new ApiError(response.status, body.error || { message: `HTTP ${response.status} ${response.statusText}` });
  refusedKey(response.status, sentKey, err.message);
  return err;
}

async function request(method, path, body, headers) {
  const sentKey = sessionStorage.getItem(KEY_KEY);
  const init = { method, headers: authHeaders(headers, method) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorFrom(response, sentKey);
  return response;
}

const getJSON = async (path) => (await request("GET", path)).json();
const sendJSON = async (method, path, body) => (await request(method, path, body)).json();

function describe(err) {
  if (!(err instanceof ApiError)) return `Could not reach the gateway: ${err.message}`;
  const lines = [err.message];
  for (const v of err.violations.slice(0, 8)) lines.push(`• ${v.field}: ${v.description}`);
  if (err.status === 501) lines.push("(this part of the platform has not landed yet)");
  return lines.join("\n");
}

/* Server-sent events over fetch (EventSource cannot send the API key). */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const ev = { id: null, event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = line.slice(0, i), val = line.slice(i + 1).replace(/^ /, "");
        if (field === "data") ev.data += val;
        else if (field === "id") ev.id = Number(val);
        else if (field === "event") ev.event = val;
      }
      if (ev.data) onEvent(ev.event, JSON.parse(ev.data), ev.id);
    }
  }
}

/* ------------------------------------------------------------- helpers */
function node(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) n.append(c instanceof Node ? c : String(c));
  return n;
}

const kindName = (k) => String(k || "").replace(/^COLUMN_KIND_/, "").toLowerCase().replace("_", " ");
const short = (enumValue, prefix) => String(enumValue || "").replace(prefix, "").toLowerCase();
const num = (v) => (v === undefined || v === null || v === "" ? "" : Number(v).toLocaleString());
/* Sizes as the limits are set: 100 MB = 100 × 2^20 bytes. */
const megabytes = (n) => `${Number((n / 1048576).toFixed(n < 10 * 1048576 ? 1 : 0))} MB`;
const when = (ts) => (ts ? new Date(ts).toLocaleString() : "");

function table(headers, rows, caption) {
  if (!rows.length) return node("p", { class: "empty" }, "None yet.");
  return node("table", {},
    caption ? node("caption", { class: "visually-hidden" }, caption) : null,
    node("thead", {}, node("tr", {}, headers.map((h) => node("th", { scope: "col" }, h)))),
    node("tbody", {}, rows.map((r) => node("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : node("td", {}, c)))))));
}

function choose(select, value) {
  if ([...select.options].some((o) => o.value === value)) select.value = value;
}

function fillSelect(select, items, label, value) {
  const keep = value ?? select.value;
  select.textContent = "";
  if (!items.length) select.append(node("option", { value: "" }, "none available yet"));
  for (const item of items) select.append(node("option", { value: item.id }, label(item)));
  if (items.some((i) => i.id === keep)) select.value = keep;
}

/* ---------------------------------------------------------------- auth */
function showAuth(message) {
  $("auth-form").hidden = false;
  $("auth-message").textContent = message || "This gateway needs an API key.";
}

$("auth-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_KEY, $("api-key").value.trim());
  $("api-key").value = "";
  $("auth-form").hidden = true;
  refreshAll();
  resumeWatch();
  resumeEvaluation();
});

/* ------------------------------------------------------------- routing */
const STEPS = ["upload", "train", "generate", "evaluate", "library"];
function route() {
  const [step, arg] = (location.hash.slice(1) || "upload").split("/");
  const current = STEPS.includes(step) ? step : "upload";
  for (const s of STEPS) $(`step-${s}`).hidden = s !== current;
  for (const a of document.querySelectorAll(".steps a")) {
    if (a.dataset.step === current) a.setAttribute("aria-current", "step");
    else a.removeAttribute("aria-current");
  }
  return { step: current, arg };
}
window.addEventListener("hashchange", () => {
  const { step, arg } = route();
  $(`h-${step}`).focus();
  if (step === "library") refreshLists();
  if (step === "train" && arg && arg.startsWith("job-") && (!state.watch || state.watch.job_id !== arg)) resumeWatch();
  if (step === "evaluate" && arg && arg.startsWith("eval-") && (!state.evaluation || state.evaluation.job_id !== arg)) resumeEvaluation();
});

/* -------------------------------------------------------------- lists */
async function refreshAll() {
  try {
    const { datasets } = await getJSON("/v1/datasets?page_size=200");
    state.datasets = datasets;
  } catch (err) { state.datasets = []; }
  fillSelect($("train-dataset"), state.datasets, (d) => `${d.display_name} (${d.id})`);
  fillSelect($("eval-dataset"), state.datasets, (d) => `${d.display_name} (${d.id})`);
  updateTargets($("train-dataset"), $("train-target"));
  updateTrainColumns();
  proposePreset();
  updateTargets($("eval-dataset"), $("eval-target"));
  try {
    const { models } = await getJSON("/v1/models?page_size=200");
    state.models = models;
  } catch (err) { state.models = []; }
  const label = (m) => `${m.id} (${m.engine || "ctgan"}, dataset ${m.dataset_id}, ${m.epochs_trained || (m.config && m.config.epochs)} epochs)`;
  fillSelect($("gen-model"), state.models, label);
  fillSelect($("eval-model"), state.models, label);
  if (!$("step-library").hidden) refreshLists();
}

function updateTargets(datasetSelect, targetSelect) {
  const ds = state.datasets.find((d) => d.id === datasetSelect.value);
  const keep = targetSelect.value;
  targetSelect.textContent = "";
  targetSelect.append(node("option", { value: "" }, "none"));
  for (const c of (ds && ds.schema.columns) || []) targetSelect.append(node("option", { value: c.name }, `${c.name} (${kindName(c.kind)})`));
  targetSelect.value = [...targetSelect.options].some((o) => o.value === keep) ? keep : "";
}
function updateTrainColumns() {
  const ds = state.datasets.find((d) => d.id === $("train-dataset").value);
  const body = $("train-columns-table").querySelector("tbody");
  body.replaceChildren(...((ds && ds.schema.columns) || []).map((c, i) => {
    const learned = !["COLUMN_KIND_IDENTIFIER", "COLUMN_KIND_FREE_TEXT"].includes(c.kind);
    const select = node("select", { class: "learn-as", id: `learn-as-${i}`, "data-column": c.name, "aria-label": `Learn ${c.name} as` },
      node("option", { value: "" }, learned ? `${kindName(c.kind)}, as inferred` : `not learned: fakes in its format (${kindName(c.kind)})`),
      node("option", { value: "discrete" }, "categories"),
      ...(learned ? [node("option", { value: "exclude" }, "excluded: left empty")]
        : [node("option", { value: "id" }, "numbered rows (id)"), node("option", { value: "drop" }, "left empty (drop)")]));
    return node("tr", {}, node("th", { scope: "row" }, c.name), node("td", {}, `${kindName(c.kind)}${c.kind_reason ? `: ${c.kind_reason}` : ""}`), node("td", {}, select));
  }));
}

function columnChoices() {
  const discrete = [], exclude = [], policies = {};
  for (const s of document.querySelectorAll(".learn-as")) {
    if (s.value === "discrete") discrete.push(s.dataset.column);
    if (s.value === "exclude") exclude.push(s.dataset.column);
    if (s.value === "id" || s.value === "drop") policies[s.dataset.column] = s.value;
  }
  return { discrete, exclude, policies };
}

$("train-dataset").addEventListener("change", () => { updateTargets($("train-dataset"), $("train-target")); updateTrainColumns(); proposePreset(); });
$("eval-dataset").addEventListener("change", () => updateTargets($("eval-dataset"), $("eval-target")));

async function listInto(id, path, field, headers, row) {
  const box = $(id);
  try {
    const body = await getJSON(path);
    box.replaceChildren(table(headers, body[field].map(row), id));
  } catch (err) {
    box.replaceChildren(node("p", { class: "empty" }, describe(err)));
  }
}

function refreshLists() {
  listInto("list-datasets", "/v1/datasets?page_size=200", "datasets", ["ID", "Name", "Rows", "Columns", "Created", ""], (d) => [
    d.id, d.display_name, num(d.row_count), num(d.column_count), when(d.create_time),
    node("td", {}, node("button", { type: "button", onclick: () => { showSchema(d); location.hash = "#upload"; } }, "Schema"), " ",
      node("button", { type: "button", onclick: async () => {
        if (!confirm(`Delete ${d.display_name}?`)) return;
        try { await request("DELETE", `/v1/datasets/${d.id}`); } catch (err) { alert(describe(err)); }
        refreshAll();
      } }, "Delete")),
  ]);
  listInto("list-jobs", "/v1/jobs?page_size=200", "jobs", ["ID", "Dataset", "State", "Epochs", "Model", ""], (j) => [
    j.id, j.dataset_id, short(j.state, "JOB_STATE_"), `${j.epochs_completed}/${(j.config && j.config.epochs) || "?"}`, j.model_id || j.error_message,
    node("td", {}, node("a", { href: `#train/${j.id}` }, "Watch")),
  ]);
  listInto("list-models", "/v1/models?page_size=200", "models", ["ID", "Dataset", "Engine", "Epochs", "Trained in", "Created", ""], (m) => [
    m.id, m.dataset_id, m.engine || "ctgan", m.epochs_trained || (m.config && m.config.epochs) || "", `${Number(m.training_seconds || 0).toFixed(1)} s`, when(m.create_time),
    node("td", {},
      node("button", { type: "button", onclick: () => { choose($("gen-model"), m.id); modelChanged(); location.hash = "#generate"; } }, "Generate"), " ",
      node("button", { type: "button", onclick: () => { choose($("eval-model"), m.id); choose($("eval-dataset"), m.dataset_id); updateTargets($("eval-dataset"), $("eval-target")); location.hash = "#evaluate"; } }, "Evaluate")),
  ]);
  listInto("list-evaluations", "/v1/evaluations?page_size=200", "jobs", ["ID", "Synthetic source", "State", "Done", "Report", ""], (j) => [
    j.id, j.model_id || j.synthetic_dataset_id, short(j.state, "JOB_STATE_"), `${Math.round(100 * ((j.progress && j.progress.fraction) || 0))} %`,
    j.report_id || (j.error && j.error.message) || "",
    node("td", {}, node("a", { href: `#evaluate/${j.id}` }, "Watch")),
  ]);
  listInto("list-reports", "/v1/reports?page_size=200", "reports", ["ID", "Dataset", "Verdict", "Utility", "Fidelity", "Privacy", ""], (r) => [
    r.id, r.dataset_id, badge(r.verdict), Charts.fmt(r.utility_score), Charts.fmt(r.fidelity_score), Charts.fmt(r.privacy_score),
    node("td", {}, node("button", { type: "button", onclick: async () => {
      try { renderReport((await getJSON(`/v1/reports/${r.id}`)).report); location.hash = "#evaluate"; } catch (err) { alert(describe(err)); }
    } }, "Open")),
  ]);
}
$("refresh").addEventListener("click", () => refreshAll());

/* -------------------------------------------------------------- 1. upload */
function showUploadError(message) {
  $("upload-error").textContent = message;
}

function checkFile(file) {
  const name = file.name.toLowerCase();
  if (!/\.(csv|csv\.gz|gz|txt)$/.test(name)) return `${file.name} is not a CSV file (.csv or .csv.gz).`;
  if (file.size === 0) return `${file.name} is empty.`;
  const max = state.info ? state.info.max_upload_bytes : Infinity;
  if (file.size > max) return `${file.name} is ${megabytes(file.size)}: more than the ${megabytes(max)} limit.`;
  return "";
}

function uploadFile(file) {
  showUploadError("");
  $("schema").hidden = true;
  $("file-name").textContent = `${file.name} (${(file.size / 1e3).toFixed(1)} kB)`;
  const problem = checkFile(file);
  if (problem) { showUploadError(problem); return; }
  const name = $("display-name").value.trim() || file.name;
  const xhr = new XMLHttpRequest();
  const sentKey = sessionStorage.getItem(KEY_KEY);
  xhr.open("POST", `/v1/datasets?display_name=${encodeURIComponent(name)}`);
  for (const [k, v] of Object.entries(authHeaders({ "Content-Type": file.type || "text/csv" }, "POST"))) xhr.setRequestHeader(k, v);
  const bar = $("upload-progress");
  bar.hidden = false; bar.value = 0;
  xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; });
  xhr.addEventListener("load", () => {
    bar.hidden = true;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 200) {
      showSchema(body.dataset);
      refreshAll().then(() => {
        choose($("train-dataset"), body.dataset.id);
        choose($("eval-dataset"), body.dataset.id);
        updateTargets($("train-dataset"), $("train-target"));
        updateTrainColumns();
        proposePreset();
        updateTargets($("eval-dataset"), $("eval-target"));
      });
    } else {
      const err = new ApiError(xhr.status, body.error || { message: `HTTP ${xhr.status}` });
      refusedKey(xhr.status, sentKey, err.message);
      showUploadError(`${file.name} was not stored: ${describe(err)}`);
    }
  });
  xhr.addEventListener("error", () => { bar.hidden = true; showUploadError("The upload failed: the gateway could not be reached."); });
  xhr.send(file);
}

function showSchema(d) {
  $("schema").hidden = false;
  $("schema-title").textContent = `Schema of ${d.display_name}`;
  $("schema-summary").textContent = `${d.id}: ${num(d.row_count)} rows × ${num(d.column_count)} columns, ${(d.size_bytes / 1e6).toFixed(2)} MB, ${d.fingerprint.slice(0, 19)}…`;
  const body = $("schema-table").querySelector("tbody");
  body.replaceChildren(...d.schema.columns.map((c) => {
    let values = "";
    if (c.minimum !== undefined && c.maximum !== undefined) values = `${Charts.fmt(c.minimum)} … ${Charts.fmt(c.maximum)}`;
    else if (c.categories && c.categories.length) values = c.categories.slice(0, 5).join(", ") + (c.categories.length > 5 ? ", …" : "");
    if (c.withheld_categories) values += `${values ? "; " : ""}${num(c.withheld_categories)} rare withheld`;
    if (c.datetime_format) values = `format ${c.datetime_format}`;
    return node("tr", {}, node("th", { scope: "row" }, c.name), node("td", {}, kindName(c.kind) + (c.kind_overridden ? " (set)" : "")),
      node("td", { class: "hint" }, c.kind_reason || ""),
      node("td", { class: "num" }, num(c.missing_count)), node("td", { class: "num" }, num(c.distinct_count)), node("td", {}, values));
  }));
}

$("file-input").addEventListener("change", (e) => { if (e.target.files.length) uploadFile(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) uploadFile(e.dataTransfer.files[0]);
});

/* -------------------------------------------------------------- 2. train */
function saveWatch() {
  if (state.watch) localStorage.setItem(WATCH_KEY, JSON.stringify(state.watch));
}

// What each engine's two per-epoch losses are (the copula has no training loop).
const LOSS_NAMES = { ctgan: ["generator", "discriminator"], tvae: ["reconstruction", "KL divergence"] };

function drawLoss() {
  const w = state.watch;
  const figure = $("loss-chart").closest("figure");
  figure.hidden = w.engine === "copula";
  const [first, second] = LOSS_NAMES[w.engine] || LOSS_NAMES.ctgan;
  figure.querySelector("figcaption").textContent = `${first[0].toUpperCase() + first.slice(1)} and ${second} loss per epoch.`;
  Charts.line($("loss-chart"), {
    title: "Training loss",
    xLabel: "epoch",
    integerX: true,
    xMin: 0,
    xMax: w.epochs || 1,
    series: [
      { name: first, cls: "g", points: w.points.map((p) => [p[0], p[1]]) },
      { name: second, cls: "d", points: w.points.map((p) => [p[0], p[2]]) },
    ],
  });
}

function trainStatus(text) { $("train-status").textContent = text; }

function onTrainingEvent(kind, ev, id) {
  const w = state.watch;
  w.last = id || ev.sequence || w.last;
  if (kind === "queued") trainStatus(`Queued (${ev.queued.position || 0} ahead).`);
  else if (kind === "started") trainStatus(`Started on ${ev.started.device}: ${num(ev.started.training_rows)} training rows, ${num(ev.started.holdout_rows)} held out.`);
  else if (kind === "resumed") trainStatus(`Resumed from epoch ${ev.resumed.from_epoch} after a trainer restart.`);
  else if (kind === "engine_tried") {
    const t = ev.engine_tried;
    const utility = t.utility === undefined ? "" : `, utility ${Number(t.utility).toFixed(2)}`;
    trainStatus(`Tried ${t.engine}: score ${Number(t.score).toFixed(2)} (fidelity ${Number(t.fidelity).toFixed(2)}${utility}).`);
  } else if (kind === "engine_chosen") {
    w.choice = `Chose ${ev.engine_chosen.engine}. ${ev.engine_chosen.reason}`;
    w.engine = ev.engine_chosen.engine;
    showChoice(w.choice);
    drawLoss();
    trainStatus(`Training ${ev.engine_chosen.engine} on all the rows…`);
  }
  else if (kind === "epoch") {
    const e = ev.epoch;
    w.epochs = e.epochs;
    if (!w.points.some((p) => p[0] === e.epoch)) w.points.push([e.epoch, e.generator_loss, e.discriminator_loss]);
    $("train-progress").value = e.epoch / e.epochs;
    const [first, second] = LOSS_NAMES[w.engine] || LOSS_NAMES.ctgan;
    trainStatus(`Epoch ${e.epoch} of at most ${e.epochs}: ${first} loss ${Charts.fmt(e.generator_loss)}, ${second} loss ${Charts.fmt(e.discriminator_loss)}, about ${Math.round(e.eta_seconds || 0)} s left.`);
    drawLoss();
  } else if (kind === "checkpoint") { /* quiet */ }
  else if (kind === "succeeded") {
    w.done = true;
    $("train-progress").value = 1;
    trainStatus(`Finished: model ${ev.succeeded.model_id} (${Number(ev.succeeded.training_seconds || 0).toFixed(1)} s).`);
    $("train-done").hidden = false;
    refreshAll().then(() => { choose($("gen-model"), ev.succeeded.model_id); choose($("eval-model"), ev.succeeded.model_id); modelChanged(); });
  } else if (kind === "failed") { w.done = true; trainStatus(`Failed: ${ev.failed.error_code}: ${ev.failed.error_message}`); }
  else if (kind === "cancelled") { w.done = true; trainStatus(`Cancelled after ${ev.cancelled.epochs_completed} epochs.`); }
  else if (kind === "error") { w.done = true; $("train-error").textContent = describe(new ApiError(ev.error.code, ev.error)); }
  $("train-cancel").disabled = !!w.done;
  saveWatch();
}

function showChoice(text) {
  $("train-choice").hidden = !text;
  $("train-choice").textContent = text || "";
}

async function watchJob(jobId, after, points, epochs, choice, engine) {
  if (state.watchAbort) state.watchAbort.abort();
  state.watch = { job_id: jobId, last: after, points: points || [], epochs: epochs || 0, done: false, choice: choice || "", engine: engine || "" };
  saveWatch();
  if (location.hash !== `#train/${jobId}`) history.replaceState(null, "", `#train/${jobId}`);
  $("train-live").hidden = false;
  $("train-done").hidden = true;
  showChoice(state.watch.choice);
  $("train-error").textContent = "";
  $("train-cancel").disabled = false;
  drawLoss();
  trainStatus(`Following ${jobId}…`);
  let failures = 0;
  while (state.watch && state.watch.job_id === jobId && !state.watch.done) {
    const abort = new AbortController();
    state.watchAbort = abort;
    try {
      const sentKey = sessionStorage.getItem(KEY_KEY);
      const response = await fetch(`/v1/jobs/${jobId}/events?after_sequence=${state.watch.last}`, { headers: authHeaders(), signal: abort.signal });
      if (!response.ok) throw await errorFrom(response, sentKey);
      failures = 0;
      await readEvents(response, onTrainingEvent);
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof ApiError && err.status < 500) {
        $("train-error").textContent = describe(err);
        state.watch.done = true;
        $("train-cancel").disabled = true;
        saveWatch();
        return;
      }
      failures += 1;
      trainStatus(`Connection lost; re-attaching after event ${state.watch.last}…`);
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 5000)));
    }
  }
}

function resumeWatch() {
  const [step, arg] = location.hash.slice(1).split("/");
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(WATCH_KEY) || "null"); } catch (_) { saved = null; }
  if (step === "train" && arg && arg.startsWith("job-")) {
    if (saved && saved.job_id === arg) watchJob(arg, saved.last, saved.points, saved.epochs, saved.choice, saved.engine);
    else watchJob(arg, 0, []);
  } else if (saved && !saved.done) {
    watchJob(saved.job_id, saved.last, saved.points, saved.epochs, saved.choice, saved.engine);
  }
}

$("train-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("train-error").textContent = "";
  const config = { synthesizer: $("train-synthesizer").value, batch_size: Number($("train-batch").value) };
  const { discrete, exclude, policies } = columnChoices();
  if (discrete.length) config.discrete_columns = discrete;
  if (exclude.length) config.exclude_columns = exclude;
  if (Object.keys(policies).length) config.column_policies = policies;
  if ($("train-length").value === "epochs") config.epochs = Number($("train-epochs").value);
  else config.preset = $("train-length").value;
  if ($("train-seed").value !== "") config.seed = Number($("train-seed").value);
  if ($("train-target").value) config.target_column = $("train-target").value;
  $("train-start").disabled = true;
  try {
    const { job } = await sendJSON("POST", "/v1/jobs", { dataset_id: $("train-dataset").value, config });
    const engine = job.config.synthesizer === "auto" ? "" : job.config.synthesizer;
    watchJob(job.id, 0, [], job.config.epochs, "", engine);
  } catch (err) {
    $("train-error").textContent = describe(err);
  } finally {
    $("train-start").disabled = false;
  }
});

// The preset proposed for a table: small ones are learned well within a minute.
const QUICK_CELLS = 100_000;

function proposePreset() {
  const ds = state.datasets.find((d) => d.id === $("train-dataset").value);
  if (!ds || $("train-length").value === "epochs") return;
  $("train-length").value = ds.row_count * ds.column_count <= QUICK_CELLS ? "quick" : "balanced";
  trainingEstimate();
}

function trainingEstimate() {
  const length = $("train-length").value;
  $("train-epochs").disabled = length !== "epochs";
  const minutes = { quick: 1, balanced: 3, best: 10 }[length];
  const auto = $("train-synthesizer").value === "auto";
  const ds = state.datasets.find((d) => d.id === $("train-dataset").value);
  const size = ds ? ` Proposed from the table's size (${num(ds.row_count)} rows × ${ds.column_count} columns).` : "";
  $("train-estimate").textContent = length === "epochs"
    ? "Trains exactly this many passes over the rows, however long they take."
    : `Stops after about ${minutes} minute${minutes > 1 ? "s" : ""}${auto ? ", the engine choice included" : ""}; longer usually means more faithful rows.${size}`;
}
$("train-length").addEventListener("change", trainingEstimate);
$("train-synthesizer").addEventListener("change", trainingEstimate);
trainingEstimate();

$("train-cancel").addEventListener("click", async () => {
  if (!state.watch) return;
  try { await sendJSON("POST", `/v1/jobs/${state.watch.job_id}:cancel`); trainStatus("Cancel requested…"); }
  catch (err) { $("train-error").textContent = describe(err); }
});

/* ------------------------------------------------------------ 3. generate */
let modelSchema = [];
async function modelChanged() {
  modelSchema = [];
  const id = $("gen-model").value;
  if (!id) return;
  try { modelSchema = ((await getJSON(`/v1/models/${id}`)).model.schema || {}).columns || []; } catch (_) { modelSchema = []; }
  for (const sel of document.querySelectorAll(".cond-column, .cond-other")) fillColumns(sel);
}
$("gen-model").addEventListener("change", modelChanged);

function fillColumns(select) {
  const keep = select.value;
  select.textContent = "";
  for (const c of modelSchema) select.append(node("option", { value: c.name }, c.name));
  if (keep) select.value = keep;
}

// synth.v1.Comparison names -> what the condition editor shows.
const COMPARE_LABELS = {
  COMPARISON_LESS: "is less than column",
  COMPARISON_LESS_EQUAL: "is at most column",
  COMPARISON_GREATER: "is more than column",
  COMPARISON_GREATER_EQUAL: "is at least column",
  COMPARISON_EQUAL: "equals column",
  COMPARISON_NOT_EQUAL: "differs from column",
};

let conditionCount = 0;
$("add-condition").addEventListener("click", () => {
  const n = ++conditionCount;
  const column = node("select", { id: `cond-col-${n}`, class: "cond-column" });
  fillColumns(column);
  const op = node("select", { id: `cond-op-${n}`, class: "cond-op" },
    node("option", { value: "equals" }, "equals"),
    node("option", { value: "in" }, "is one of (comma-separated)"),
    node("option", { value: "range" }, "is between"),
    ...Object.entries(COMPARE_LABELS).map(([value, label]) => node("option", { value }, label)));
  const v1 = node("input", { id: `cond-v1-${n}`, type: "text", "aria-label": `Condition ${n} value` });
  const v2 = node("input", { id: `cond-v2-${n}`, type: "text", "aria-label": `Condition ${n} upper bound`, hidden: true });
  // A comparison with another column of the same row (e.g. drop-off after pick-up).
  const other = node("select", { id: `cond-other-${n}`, class: "cond-other", "aria-label": `Condition ${n} other column`, hidden: true });
  fillColumns(other);
  if (other.options.length > 1) other.selectedIndex = 1; // not the first column, which the column picker shows
  op.addEventListener("change", () => {
    const comparing = op.value in COMPARE_LABELS;
    other.hidden = !comparing;
    v1.hidden = comparing;
    v2.hidden = op.value !== "range";
    v1.setAttribute("aria-label", op.value === "range" ? `Condition ${n} lower bound` : `Condition ${n} value`);
  });
  const row = node("div", { class: "condition" },
    node("label", { for: column.id }, `Condition ${n}: column`), column,
    node("label", { for: op.id, class: "visually-hidden" }, `Condition ${n} test`), op, v1, v2, other,
    node("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove"));
  $("condition-rows").append(row);
  column.focus();
});

function conditions() {
  return [...document.querySelectorAll(".condition")].map((row) => {
    const [column, op, other] = row.querySelectorAll("select");
    const [v1, v2] = row.querySelectorAll("input");
    if (op.value in COMPARE_LABELS) return { column: column.value, compare: { op: op.value, other_column: other.value } };
    if (op.value === "equals") return { column: column.value, equals: v1.value };
    if (op.value === "in") return { column: column.value, in_set: { values: v1.value.split(",").map((s) => s.trim()).filter(Boolean) } };
    const range = {};
    if (v1.value !== "") range.minimum = v1.value;
    if (v2.value !== "") range.maximum = v2.value;
    return { column: column.value, range };
  });
}

$("generate-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("gen-error").textContent = "";
  $("gen-preview").hidden = true;
  const model = $("gen-model").value;
  const body = { row_count: Number($("gen-rows").value), conditions: conditions() };
  if ($("gen-seed").value !== "") body.seed = Number($("gen-seed").value);
  $("gen-start").disabled = true;
  try {
    const response = await request("POST", `/v1/models/${model}:sample`, body);
    const seed = response.headers.get("X-Synth-Seed");
    const reader = response.body.getReader();
    const parts = [];
    let size = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.length;
      $("gen-status").textContent = `Received ${(size / 1e6).toFixed(2)} MB…`;
    }
    const blob = new Blob(parts, { type: "text/csv" });
    const link = node("a", { href: URL.createObjectURL(blob), download: `${model}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    $("gen-status").textContent = `Downloaded ${model}.csv: ${body.row_count.toLocaleString()} rows, ${(size / 1e6).toFixed(2)} MB, seed ${seed}.`;
    const lines = (await blob.slice(0, 64 * 1024).text()).split("\n").slice(0, 11).filter(Boolean);
    const [head, ...rows] = lines.map((l) => l.split(","));
    $("gen-preview").replaceChildren(table(head || [], rows, "First generated rows"));
    $("gen-preview").hidden = false;
  } catch (err) {
    $("gen-error").textContent = err instanceof TypeError ? "The download broke off before the end; nothing was saved." : describe(err);
  } finally {
    $("gen-start").disabled = false;
  }
});

/* ------------------------------------------------------------ 4. evaluate */
function badge(verdict) {
  const v = short(verdict, "VERDICT_") || "unspecified";
  const cls = { pass: "pass", warn: "warn", fail: "fail" }[v] || "na";
  const text = { pass: "pass", warn: "warning", fail: "fail", not_applicable: "n/a" }[v] || v;
  return node("span", { class: `badge ${cls}` }, text);
}

/* An evaluation is a job, as training is: started with POST /v1/evaluations, followed
   through its server-sent events, and remembered (synth.evaluation) so that a reload
   re-attaches after the last event seen. */
function saveEvaluation() {
  if (state.evaluation) localStorage.setItem(EVAL_KEY, JSON.stringify(state.evaluation));
}

function evalStatus(text) { $("eval-status").textContent = text; }

// A failed job's google.rpc.Status (code, message, details) as the error a failed call gives.
function statusError(status) {
  return new ApiError(0, { message: status.message || "the evaluation failed", details: status.details || [] });
}

function onEvaluationEvent(kind, ev, id) {
  const w = state.evaluation;
  w.last = id || ev.sequence || w.last;
  if (kind === "queued") evalStatus(ev.queued.position ? `Queued (${ev.queued.position} ahead)…` : "Queued…");
  else if (kind === "started") {
    $("eval-progress").value = 0;
    evalStatus((ev.started.attempt || 1) > 1 ? "Computing again after an evaluator restart…" : "Started…");
  } else if (kind === "progress") {
    $("eval-progress").value = ev.progress.fraction || 0;
    evalStatus(`${ev.progress.stage}…`);
  } else if (kind === "succeeded") {
    w.done = true;
    w.report_id = ev.succeeded.report_id;
    $("eval-progress").value = 1;
    evalStatus(`Report ${ev.succeeded.report_id} ready.`);
    showEvaluationReport(ev.succeeded.report_id);
  } else if (kind === "failed") {
    w.done = true;
    evalStatus("Failed.");
    $("eval-error").textContent = describe(statusError(ev.failed.status || {}));
  } else if (kind === "cancelled") { w.done = true; evalStatus("Cancelled."); }
  else if (kind === "error") { w.done = true; $("eval-error").textContent = describe(new ApiError(ev.error.code, ev.error)); }
  $("eval-cancel").disabled = !!w.done;
  saveEvaluation();
}

async function showEvaluationReport(reportId) {
  try { renderReport((await getJSON(`/v1/reports/${reportId}`)).report); } catch (err) { $("eval-error").textContent = describe(err); }
}

async function watchEvaluation(jobId, after) {
  if (state.evaluationAbort) state.evaluationAbort.abort();
  state.evaluation = { job_id: jobId, last: after || 0, done: false };
  saveEvaluation();
  if (location.hash !== `#evaluate/${jobId}`) history.replaceState(null, "", `#evaluate/${jobId}`);
  $("eval-live").hidden = false;
  $("eval-error").textContent = "";
  $("eval-cancel").disabled = false;
  evalStatus(`Following ${jobId}…`);
  let failures = 0;
  while (state.evaluation && state.evaluation.job_id === jobId && !state.evaluation.done) {
    const abort = new AbortController();
    state.evaluationAbort = abort;
    try {
      const sentKey = sessionStorage.getItem(KEY_KEY);
      const response = await fetch(`/v1/evaluations/${jobId}/events?after_sequence=${state.evaluation.last}`, { headers: authHeaders(), signal: abort.signal });
      if (!response.ok) throw await errorFrom(response, sentKey);
      failures = 0;
      await readEvents(response, onEvaluationEvent);
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof ApiError && err.status < 500) {
        $("eval-error").textContent = describe(err);
        state.evaluation.done = true;
        $("eval-cancel").disabled = true;
        saveEvaluation();
        return;
      }
      failures += 1;
      evalStatus(`Connection lost; re-attaching after event ${state.evaluation.last}…`);
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 5000)));
    }
  }
}

function resumeEvaluation() {
  const [step, arg] = location.hash.slice(1).split("/");
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(EVAL_KEY) || "null"); } catch (_) { saved = null; }
  if (step === "evaluate" && arg && arg.startsWith("eval-")) {
    // the events from the start: a finished job replays to its report
    watchEvaluation(arg, saved && saved.job_id === arg && !saved.done ? saved.last : 0);
  } else if (saved && !saved.done) {
    watchEvaluation(saved.job_id, saved.last);
  }
}

$("eval-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("eval-error").textContent = "";
  $("report").hidden = true;
  const body = {
    dataset_id: $("eval-dataset").value,
    model_id: $("eval-model").value,
    target_column: $("eval-target").value,
    task: $("eval-task").value,
    synthetic_row_count: Number($("eval-rows").value || 0),
  };
  if ($("eval-seed").value !== "") body.seed = Number($("eval-seed").value);
  $("eval-start").disabled = true;
  $("eval-live").hidden = false;
  $("eval-progress").value = 0;
  evalStatus("Starting…");
  try {
    const { job } = await sendJSON("POST", "/v1/evaluations", body);
    watchEvaluation(job.id, 0);
  } catch (err) {
    $("eval-error").textContent = describe(err);
    evalStatus("");
  } finally {
    $("eval-start").disabled = false;
  }
});

$("eval-cancel").addEventListener("click", async () => {
  if (!state.evaluation) return;
  try {
    await request("POST", `/v1/evaluations/${state.evaluation.job_id}:cancel`);
    evalStatus("Cancelling…");
  } catch (err) { $("eval-error").textContent = describe(err); }
});

const CATEGORIES = [
  ["METRIC_CATEGORY_UTILITY", "Utility", "utility_score", "Can a model trained on synthetic rows predict real ones?"],
  ["METRIC_CATEGORY_FIDELITY", "Fidelity", "fidelity_score", "Do the columns and their relations look like the real table?"],
  ["METRIC_CATEGORY_PRIVACY", "Privacy", "privacy_score", "Are real people's rows kept out of the synthetic set?"],
];

function renderReport(r) {
  const box = $("report");
  box.hidden = false;
  const cards = CATEGORIES.map(([cat, title, field, question]) => {
    const metrics = (r.metrics || []).filter((m) => m.category === cat);
    const worst = metrics.some((m) => m.verdict === "VERDICT_FAIL") ? "VERDICT_FAIL" : metrics.some((m) => m.verdict === "VERDICT_WARN") ? "VERDICT_WARN" : metrics.length ? "VERDICT_PASS" : "VERDICT_NOT_APPLICABLE";
    return node("article", { class: "card", "aria-label": `${title} card` },
      node("h3", {}, title, badge(worst)),
      node("p", { class: "hint" }, question),
      node("p", {}, node("span", { class: "score" }, Charts.fmt(r[field] || 0)), " / 1"),
      metrics.map((m) => node("div", { class: "metric" },
        node("div", { class: "line" }, node("strong", {}, m.name), badge(m.verdict)),
        node("p", {}, `synthetic ${Charts.fmt(m.value)} · threshold ${m.higher_is_better ? "≥" : "≤"} ${Charts.fmt(m.threshold)}`),
        node("p", { class: "beside" },
          `naive baseline ${m.baseline_value === undefined ? "–" : Charts.fmt(m.baseline_value)} · real holdout ${m.holdout_value === undefined ? "–" : Charts.fmt(m.holdout_value)}`),
        node("p", {}, m.explanation))));
  });
  const histSelect = node("select", { id: "hist-column" }, (r.histograms || []).map((h, i) => node("option", { value: String(i) }, h.column)));
  const histBox = node("div", { id: "hist-chart", class: "chart" });
  const drawHist = () => {
    const h = (r.histograms || [])[Number(histSelect.value)];
    if (!h) { histBox.textContent = "No distributions in this report."; return; }
    const series = [{ name: "real", cls: "real", values: h.real || [] }, { name: "synthetic", cls: "synthetic", values: h.synthetic || [] }];
    if (h.baseline && h.baseline.length) series.push({ name: "naive baseline", cls: "baseline", values: h.baseline });
    if (h.bin_edges && h.bin_edges.length) Charts.histogram(histBox, { title: `Distribution of ${h.column}`, edges: h.bin_edges, series });
    else Charts.bars(histBox, { title: `Distribution of ${h.column}`, labels: h.labels || [], series });
  };
  histSelect.addEventListener("change", drawHist);
  const corr = r.correlations || {};
  const heat = [["real", "Real"], ["synthetic", "Synthetic"], ["difference", "Difference (synthetic − real)"]].map(([k, title]) => {
    const fig = node("figure", {}, node("div", { class: "chart" }), node("figcaption", {}, `${title} correlations`));
    const m = corr[k];
    if (m && m.columns && m.columns.length) Charts.heatmap(fig.firstChild, { title: `${title} correlations`, columns: m.columns, values: m.values });
    else fig.firstChild.textContent = "Not in this report.";
    return fig;
  });
  const distances = (r.distances || []).map((d) => {
    const fig = node("figure", {}, node("div", { class: "chart" }),
      node("figcaption", {}, d.name === "dcr" ? "Distance to the closest training row (DCR): synthetic rows vs real held-out rows. Synthetic rows much closer than holdout rows suggest copying." : "Nearest-neighbour distance ratio (NNDR): synthetic vs real held-out rows."));
    Charts.histogram(fig.firstChild, { title: d.name.toUpperCase(), edges: d.bin_edges || [], series: [
      { name: "synthetic → train", cls: "synthetic", values: d.synthetic_to_train || [] },
      { name: "holdout → train", cls: "holdout", values: d.holdout_to_train || [] }] });
    return fig;
  });
  box.replaceChildren(
    node("h3", {}, `Report ${r.id} `, badge(r.verdict)),
    node("p", {}, r.summary || ""),
    ...(r.engine ? [node("p", { id: "report-engine" }, `Engine: ${r.engine}${r.engine_reason ? ` (chosen automatically: ${r.engine_reason})` : ""}`)] : []),
    ...((r.next_steps || []).length ? [node("h3", {}, "What to do next"), node("ul", { id: "next-steps" }, ...r.next_steps.map((s) => node("li", {}, s)))] : []),
    node("p", { class: "hint" }, `Dataset ${r.dataset_id}${r.model_id ? `, model ${r.model_id}` : ""}${r.synthetic_dataset_id ? `, synthetic set ${r.synthetic_dataset_id}` : ""}: ${num(r.training_rows)} training rows, ${num(r.holdout_rows)} held-out rows, ${num(r.synthetic_rows)} synthetic rows${r.target_column ? `, target ${r.target_column}` : ""}.`),
    node("div", { class: "cards" }, cards),
    node("h3", {}, "Distributions, real vs synthetic"),
    node("p", {}, node("label", { for: "hist-column" }, "Column "), histSelect),
    histBox,
    node("h3", {}, "Correlations"),
    node("div", { class: "charts-row" }, heat),
    node("h3", {}, "Privacy distances"),
    node("div", { class: "charts-row" }, distances.length ? distances : node("p", { class: "empty" }, "Not in this report.")));
  drawHist();
}

/* ----------------------------------------------------------------- start */
async function start() {
  route();
  try {
    state.info = await (await fetch("/v1/info", { headers: authHeaders() })).json();
    $("max-size").textContent = megabytes(state.info.max_upload_bytes);
    if (state.info.auth_required && !state.info.authenticated) showAuth(sessionStorage.getItem(KEY_KEY) ? "That API key was not accepted." : "");
  } catch (_) { /* offline: the calls will say so */ }
  await refreshAll();
  if (!state.info || !state.info.auth_required || state.info.authenticated) {
    resumeWatch();
    resumeEvaluation();
  }
}
start();
