// The demo page: choose or record a clip, POST it to /v1/liveness, show the answer.
// Plain DOM, no build step and no third-party code: the page must work offline on the box it is served from.
// Server data is only ever put into the page as text (textContent) or as data: URLs of base64 images.
"use strict";

const FLAGS = ["return_photo", "return_normalized", "return_detection", "return_frames"];

// What a user can do about each error code (the codes are the API's, see the README's Errors table).
const HINTS = {
  BAD_VIDEO: "The file is not a video the daemon can decode. Send an MP4, WebM, MOV or MKV clip.",
  BAD_PARAM: "A query flag was not accepted.",
  UNAUTHORIZED: "This daemon needs a bearer token (auth.token-file): type it into the token field.",
  NO_ANSWER: "Is the daemon running? Reload the page to ask it again.",
  NOT_SENT: "Type the token as the daemon's token file holds it (printable ASCII).",
  VIDEO_TOO_LARGE: "The clip is bigger than limits.video-size. Send a shorter clip.",
  VIDEO_LIMITS_EXCEEDED: "The clip is over one of the daemon's limits (the param names it).",
  NO_FACE: "No frame showed a face. Face the camera, in good light, close enough.",
  MULTIPLE_FACES: "Several faces were in view (mf-selector: reject). Only one person should be in the picture.",
  NOT_ENOUGH_FRAMES: "Too few frames were usable: the counts below say why (face too small, blurred or dark).",
  BUSY: "The daemon is busy or still loading its models. Try again in a second.",
  REQUEST_TIMEOUT: "The clip did not arrive within server.read-timeout.",
};

const DROP_REASONS = {
  no_face: "no face", multiple_faces: "several faces", small_face: "face too small", low_quality: "low quality",
};

const state = { clip: null, health: null, stream: null, recording: false, busy: false, secondsSet: false };

function $(id) {
  return document.getElementById(id);
}

// el("p", {class: "x"}, "text", child): an element with attributes and children (strings become text nodes).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fixed(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function megabytes(bytes) {
  return (bytes / 1048576).toFixed(bytes < 1048576 ? 2 : 1) + " MB";
}

function setStatus(text, kind = "muted") {
  const status = $("status");
  status.textContent = text;
  status.className = kind;
}

// ---- the daemon's health: version, models, threshold and limits -----------------------------------------------

async function loadHealth() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    state.health = await response.json();
  } catch (err) {
    $("health").textContent = "The daemon does not answer /health: " + err;
    return;
  }
  const h = state.health;
  const models = (h.models || []).map((m) => `${m.name} (${m.variant})`).join(", ");
  const cues = h.scoring ? h.scoring.cues.join(", ") : "";
  $("health").textContent =
    `version ${h.version} · ${h.status} · delegate ${h.delegate || "–"} · threshold ${h.liveness_threshold}` +
    (models ? ` · models: ${models}` : "") + (h.camera ? ` · camera: ${h.camera}` : "") +
    (cues ? ` · cues: ${cues}` : "");
  if (h.status === "starting") setTimeout(loadHealth, 1000);
  if (h.auth_required) $("token-note").textContent = " This daemon needs its token (auth.token-file).";
  // The daemon reads only the first max-decoded-frames frames: record about that much (at ~30 fps), plus a second.
  if (!state.secondsSet && h.max_decoded_frames) {
    $("seconds").value = String(Math.min(10, Math.max(1, Math.ceil(h.max_decoded_frames / 30) + 1)));
  }
}

// ---- the clip: a file or a camera recording -------------------------------------------------------------------

function setClip(blob, name) {
  state.clip = { blob, name };
  const limit = state.health && state.health.limits ? state.health.limits["video-size"] : null;
  const over = limit !== null && blob.size > limit;
  $("clip").textContent = `${name}, ${megabytes(blob.size)}` +
    (over ? ` — over limits.video-size (${megabytes(limit)}): the daemon will refuse it` : "");
  $("clip").className = over ? "warn" : "";
  $("send").disabled = state.busy;
  // The answer shown is about the previous clip: clear it rather than leave it beside the new one's name.
  $("answer").replaceChildren();
  setStatus("Clip ready: check it.");
}

function watchFileInputs() {
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) setClip(file, file.name);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) setClip(file, file.name);
  });
  // A file dropped anywhere else on the page is taken too (and the browser must not leave the page to show it).
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) setClip(file, file.name);
  });
  $("seconds").addEventListener("change", () => { state.secondsSet = true; });
}

function cameraUnavailable() {
  // Browsers offer the camera only to secure pages: https, or http on localhost / 127.0.0.1.
  if (!window.isSecureContext) {
    return "The browser allows the camera only on https:// or http://localhost pages. Record a clip on the " +
      "device and choose the file instead, or open this page on the box itself.";
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return "This browser has no camera access.";
  if (typeof MediaRecorder === "undefined") return "This browser cannot record video (no MediaRecorder).";
  return null;
}

async function startCamera() {
  const why = cameraUnavailable();
  if (why) {
    $("camera-note").textContent = why;
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      // The daemon's default limits: at most 1920x1080 and 30 fps. 720p is plenty for a face at arm's length.
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } },
    });
  } catch (err) {
    $("camera-note").textContent = `The camera could not be opened: ${err.name}: ${err.message}`;
    return;
  }
  const preview = $("preview");
  preview.srcObject = state.stream;
  preview.hidden = false;
  await preview.play().catch(() => {});
  $("camera-start").disabled = true;
  $("record").disabled = state.busy;
  $("camera-note").textContent = "Look at the camera, then record.";
}

function recorderType() {
  const wanted = ["video/webm;codecs=vp8", "video/webm;codecs=vp9", "video/webm", "video/mp4"];
  return wanted.find((type) => MediaRecorder.isTypeSupported(type)) || "";
}

async function recordAndCheck() {
  const seconds = Math.min(10, Math.max(1, Number($("seconds").value) || 3));
  const type = recorderType();
  // A high bitrate: coarse compression hides the screen and print texture the liveness cues look for.
  const options = { videoBitsPerSecond: 6000000 };
  if (type) options.mimeType = type;
  let recorder;
  try {
    recorder = new MediaRecorder(state.stream, options);
  } catch (err) {
    $("camera-note").textContent = `This browser cannot record the camera: ${err.name}: ${err.message}`;
    return;
  }
  const chunks = [];
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size) chunks.push(event.data);
  });
  const stopped = new Promise((resolve) => recorder.addEventListener("stop", resolve));
  state.recording = true;
  $("record").disabled = true;
  $("send").disabled = true;
  recorder.start();
  for (let left = seconds; left > 0; left--) {
    $("camera-note").textContent = `Recording… ${left}`;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  recorder.stop();
  await stopped;
  state.recording = false;
  const mime = recorder.mimeType || type || "video/webm";
  const blob = new Blob(chunks, { type: mime });
  if (!blob.size) {
    stopCamera();
    $("camera-note").textContent = "The recording came out empty: is the camera in use by another program?";
    $("send").disabled = !state.clip;
    return;
  }
  stopCamera();
  $("camera-note").textContent = `Recorded ${seconds} s (${mime}).`;
  setClip(blob, `camera recording (${seconds} s, ${mime.split(";")[0]})`);
  await check();
}

// The camera is released after each recording (a kiosk's camera light goes off); "Use the camera" opens it again.
function stopCamera() {
  if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  $("preview").srcObject = null;
  $("preview").hidden = true;
  $("camera-start").disabled = false;
  $("record").disabled = true;
}

// ---- asking the daemon ----------------------------------------------------------------------------------------

// The bearer token typed into the page, for the API calls (none when the field is empty).
function authHeader() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function check() {
  if (!state.clip || state.busy) return;
  if (/[^\x20-\x7e]/.test($("token").value.trim())) {  // fetch cannot put such a token in a header
    showError({ code: "NOT_SENT", desc: "The token has characters an HTTP header cannot carry." },
      { status: null, requestId: null, ms: null });
    $("token").focus();
    return;
  }
  state.busy = true;
  $("send").disabled = true;
  $("record").disabled = true;
  $("answer").replaceChildren();
  setStatus("Checking…");
  const query = new URLSearchParams();
  for (const flag of FLAGS) if ($(flag).checked) query.set(flag, "true");
  // The container is sniffed by the daemon, so the page need not trust the browser's guess at a file's type.
  const headers = { "Content-Type": "application/octet-stream", ...authHeader() };
  const started = performance.now();
  try {
    const response = await fetch("/v1/liveness?" + query, { method: "POST", headers, body: state.clip.blob });
    const text = await response.text();
    const elapsed = performance.now() - started;
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = { code: `HTTP ${response.status}`, desc: text.slice(0, 300) };
    }
    const meta = { status: response.status, requestId: response.headers.get("X-Request-Id"), ms: elapsed };
    if (response.ok) showAnswer(body, meta);
    else showError(body, meta);
  } catch (err) {
    // No HTTP answer at all: the daemon stopped, restarted or is unreachable (an oversized clip gets a JSON 413).
    showError({ code: "NO_ANSWER", desc: `The daemon did not answer: ${err.message}.` },
      { status: null, requestId: null, ms: null });
  } finally {
    state.busy = false;
    $("send").disabled = !state.clip;
    $("record").disabled = !state.stream || state.recording;
  }
}

function metaLine(meta) {
  const parts = [];
  if (meta.status) parts.push(`HTTP ${meta.status}`);
  if (meta.ms !== null) parts.push(`${Math.round(meta.ms)} ms round trip`);
  if (meta.requestId) parts.push(`request ${meta.requestId}`);
  return el("div", {},
    el("p", { class: "muted", id: "meta" }, parts.join(" · ")),
    el("p", { class: "muted" }, "The same request from a device or a shell:"),
    el("pre", { id: "curl" }, curlCommand()));
}

// What an integrator would run to send the same request (the token as a variable, never the one typed here).
function curlCommand() {
  const query = new URLSearchParams();
  for (const flag of FLAGS) if ($(flag).checked) query.set(flag, "true");
  const url = `${location.origin}/v1/liveness${query.toString() ? "?" + query : ""}`;
  const lines = ["curl -H 'Content-Type: video/mp4' --data-binary @clip.mp4"];
  if ($("token").value.trim() || (state.health && state.health.auth_required)) {
    lines.push('-H "Authorization: Bearer $TOKEN"');
  }
  lines.push(`'${url}'`);
  return lines.join(" \\\n     ");
}

function showAnswer(body, meta) {
  const threshold = state.health ? state.health.liveness_threshold : null;
  const face = body.best_face;
  // The one line a screen reader announces (the status is a live region); the details follow below it.
  setStatus(`${body.alive ? "Alive" : "Not alive"}: average liveness ${fixed(body.average_liveness)}` +
    (threshold === null ? "." : `, threshold ${threshold}.`));
  const verdict = el("div", { id: "verdict", class: body.alive ? "alive" : "not-alive" },
    el("strong", {}, body.alive ? "ALIVE" : "NOT ALIVE"),
    el("span", {}, ` average liveness ${fixed(body.average_liveness)}` +
      (threshold === null ? "" : ` ${body.alive ? "≥" : "<"} threshold ${threshold}`)));
  verdict.dataset.alive = String(body.alive);
  verdict.dataset.average = String(body.average_liveness);
  const facts = el("dl", { id: "best-face" },
    el("dt", {}, "best face liveness"), el("dd", {}, fixed(face.liveness)),
    el("dt", {}, "quality"), el("dd", {}, fixed(face.quality)),
    el("dt", {}, "frame"), el("dd", {}, `${face.frame_no} at ${fixed(face.frame_ts, 2)} s`),
    el("dt", {}, "box"), el("dd", {}, `${face.bbox.left}, ${face.bbox.top} – ${face.bbox.right}, ${face.bbox.bottom}`));
  if (face.detection_id) {
    const lookup = el("button", { type: "button", id: "lookup" }, "Look it up");
    lookup.addEventListener("click", () => lookUp(face.detection_id));
    facts.append(el("dt", {}, "detection_id"),
      el("dd", {}, el("code", { id: "detection-id" }, face.detection_id), " ", lookup, el("span", { id: "stored" })));
  }
  const pictures = el("div", { class: "pictures" });
  if (face.photo) pictures.append(photoWithBox(face));
  if (face.normalized) {
    pictures.append(el("figure", {},
      el("img", { id: "normalized", src: "data:image/png;base64," + face.normalized, alt: "normalized face crop" }),
      el("figcaption", {}, "normalized crop")));
  }
  show(verdict, clipNote(body.clip), facts, pictures, cuesTable(body.cues), framesTable(body, face.frame_no),
    rawJson(body), metaLine(meta));
}

// Put the answer's parts in place (leaving out the absent ones) and bring it into view: on a phone it lies below
// the form, and the button that had the focus is disabled while checking.
function show(...parts) {
  $("answer").replaceChildren(...parts.filter((part) => part !== null && part !== undefined));
  const title = $("result-title");
  title.scrollIntoView({ block: "start" });
  title.focus({ preventScroll: true });
}

// GET /v1/detections/{id}: what the detection cache kept of the best face (it survives restarts).
async function lookUp(id) {
  const headers = authHeader();
  let text;
  try {
    const response = await fetch(`/v1/detections/${encodeURIComponent(id)}`, { headers, cache: "no-store" });
    const body = await response.json();
    text = response.ok
      ? ` stored ${new Date(body.created * 1000).toLocaleString()}, liveness ${fixed(body.liveness)}, ` +
        `frame ${body.frame_no}, crop ${Math.round((body.normalized.length * 3) / 4 / 1024)} KiB`
      : ` ${body.code}: ${body.desc}`;
  } catch (err) {
    text = ` the lookup failed: ${err.message}`;
  }
  $("stored").textContent = text;
}

// What the decoder saw (return_frames), and the daemon's warning when the codec is one the cues misread.
function clipNote(clip) {
  if (!clip) return null;
  const seen = `${clip.codec} in ${clip.container}, ${clip.width}x${clip.height}, ${fixed(clip.fps, 1)} fps` +
    (clip.duration === null ? "" : `, ${fixed(clip.duration, 1)} s`);
  return el("div", {},
    el("p", { class: "muted", id: "clip-seen" }, `The daemon decoded ${seen}.`),
    clip.note ? el("p", { class: "warn", id: "clip-note" }, clip.note) : null);
}

// The full frame with the face box drawn over it, in percent so it scales with the image.
function photoWithBox(face) {
  const img = el("img", { id: "photo", src: "data:image/jpeg;base64," + face.photo, alt: "best frame" });
  const box = el("div", { class: "bbox", id: "bbox" });
  img.addEventListener("load", () => {
    const w = img.naturalWidth, h = img.naturalHeight;
    box.style.left = (100 * face.bbox.left) / w + "%";
    box.style.top = (100 * face.bbox.top) / h + "%";
    box.style.width = (100 * (face.bbox.right - face.bbox.left)) / w + "%";
    box.style.height = (100 * (face.bbox.bottom - face.bbox.top)) / h + "%";
  });
  return el("figure", {}, el("div", { class: "framed" }, img, box), el("figcaption", {}, "best frame"));
}

function bar(value) {
  const width = value === null || value === undefined ? 0 : Math.max(0, Math.min(1, value)) * 100;
  return el("span", { class: "bar" }, el("span", { "data-width": width.toFixed(1) }));
}

function framesTable(body, bestFrame) {
  if (!body.frames) return el("p", { class: "muted" }, "Per-frame scores: tick return_frames to see them.");
  const rows = body.frames.map((f) =>
    el("tr", { class: f.frame_no === bestFrame ? "best" : null },
      el("td", {}, f.frame_no), el("td", {}, fixed(f.frame_ts, 2)), el("td", {}, fixed(f.quality)),
      el("td", {}, fixed(f.cnn)), el("td", {}, fixed(f.liveness), " ", bar(f.liveness))));
  const noCnn = body.frames.every((f) => f.cnn === null);
  const table = el("table", { id: "frames" },
    el("caption", {}, `${body.frames.length} selected frames of the first ` +
      `${state.health ? state.health.max_decoded_frames : "max-decoded-frames"} decoded (the best face's row is in ` +
      "bold). quality: 0-1, the face's size, sharpness, pose, landmark confidence and exposure; liveness: the fused " +
      "score, 0-1, higher is more alive (the clip cues score the whole clip, so it differs between frames only " +
      "through the cnn column)" + (noCnn ? "; cnn –: the fusion gives the CNN no weight, so it is not run" : "")),
    el("thead", {}, el("tr", {}, ["frame", "time s", "quality", "cnn", "liveness"].map((t) => el("th", {}, t)))),
    el("tbody", {}, rows));
  // Bar widths are set from script, not inline style attributes, which the page's CSP forbids.
  for (const span of table.querySelectorAll("[data-width]")) span.style.width = span.dataset.width + "%";
  return table;
}

function detailText(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : fixed(value);
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function cuesTable(cues) {
  if (!cues) return el("span");
  const rows = Object.entries(cues).map(([name, cue]) => {
    const details = Object.entries(cue).filter(([key]) => key !== "value")
      .map(([key, value]) => `${key}=${detailText(value)}`).join(", ");
    return el("tr", {}, el("td", {}, name), el("td", {}, cue.value === null ? "abstains" : fixed(cue.value)),
      el("td", { class: "muted" }, details));
  });
  return el("table", { id: "cues" }, el("caption", {}, "clip cues: value 0-1, higher is more alive; an abstaining " +
    "cue does not vote, and planarity, bezel and surround speak only when they see an attack (details: the cue's " +
    "own measurements, docs/accuracy.md)"),
    el("thead", {}, el("tr", {}, el("th", {}, "cue"), el("th", {}, "value"), el("th", {}, "details"))),
    el("tbody", {}, rows));
}

// The answer as JSON, with the base64 images shortened to their size.
function rawJson(body) {
  const text = JSON.stringify(body, (key, value) =>
    (key === "photo" || key === "normalized") && typeof value === "string"
      ? `<${key === "photo" ? "JPEG" : "PNG"}, ${Math.round((value.length * 3) / 4 / 1024)} KiB base64>` : value, 2);
  return el("details", {}, el("summary", {}, "JSON"), el("pre", { id: "json" }, text));
}

function hintFor(body) {
  const code = body.code;
  if (code === "UNAUTHORIZED" && $("token").value.trim()) {
    return "The daemon refused this token: check it against the daemon's auth.token-file.";
  }
  if (code === "NOT_ENOUGH_FRAMES" && body.frames_decoded < body.min_selected_frames) {
    return `The clip has only ${body.frames_decoded} frame(s) and the daemon needs at least ` +
      `${body.min_selected_frames} usable ones: send a video of a few seconds, not a still picture.`;
  }
  return HINTS[code] || null;
}

function showError(body, meta) {
  const code = body.code || "ERROR";
  setStatus(`Refused: ${code}.`);
  const hint = hintFor(body);
  const box = el("div", { id: "error", class: "error" },
    el("strong", { id: "error-code" }, code),
    el("p", { id: "error-desc" }, body.desc || ""),
    body.param ? el("p", {}, "param: ", el("code", {}, body.param)) : null,
    hint ? el("p", { class: "hint" }, hint) : null);
  if (body.frames_decoded !== undefined) {
    const dropped = Object.entries(body.dropped || {}).filter(([, n]) => n)
      .map(([reason, n]) => `${n} ${DROP_REASONS[reason] || reason}`).join(", ");
    box.append(el("p", { id: "error-counts" },
      `${body.frames_decoded} frames decoded, ${body.frames_selected} selected ` +
      `(at least ${body.min_selected_frames} needed)` + (dropped ? `; dropped: ${dropped}` : "")));
  }
  show(box, rawJson(body), metaLine(meta));
  if (code === "UNAUTHORIZED" || code === "NOT_SENT") $("token").focus();
}

// ---- start ----------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  watchFileInputs();
  $("send").addEventListener("click", check);
  $("camera-start").addEventListener("click", startCamera);
  $("record").addEventListener("click", recordAndCheck);
  const why = cameraUnavailable();
  if (why) {
    $("camera-start").disabled = true;
    $("camera-note").textContent = why;
  }
  loadHealth();
});
