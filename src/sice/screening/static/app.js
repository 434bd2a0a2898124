// The screening page. Plain JS, no build step. Every name that comes from the server (scene,
// frame file, rater) goes into the page with textContent / new Option, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  rater: null,
  scenes: [],        // [{name, voted}]
  index: 0,          // position in scenes of the scene shown
  wanted: 0,         // position of the scene being loaded (keys can run ahead of the network)
  loads: 0,          // counter: only the latest scene request may update the page
  scene: null,       // /api/scenes/{scene} answer
  current: 0,        // index into scene.candidates: the one Enter votes for
  other: 1,          // the one it is compared with (side by side, flip)
  mode: "grid",
  frame: -1,         // source frame shown in the overlay
  zoom: {fx: 0.5, fy: 0.5, frozen: false},
  busy: false,
};

function sceneUrl(name) {
  return "/api/scenes/" + encodeURIComponent(name);
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))
                                       : response.statusText;
    throw new Error(response.status + " " + detail);
  }
  return body;
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
}

// ---------------------------------------------------------------- rater
async function login(name) {
  const list = await api("/api/scenes?rater=" + encodeURIComponent(name));
  state.rater = list.rater;
  state.scenes = list.scenes;
  localStorage.setItem("sice-rater", state.rater);
  $("rater-name").textContent = state.rater;
  $("login").hidden = true;
  $("work").hidden = false;
  $("scene-nav").hidden = false;
  $("rater-info").hidden = false;
  const select = $("scene-select");
  select.replaceChildren(...state.scenes.map((s, i) => new Option(s.name, String(i))));
  updateSceneMarks();
  if (state.scenes.length === 0) {
    setStatus("This dataset has no scenes to rate.", "error");
    return;
  }
  await showScene(list.resume);
  if (list.done === list.total) setStatus("Welcome back: all scenes are rated; you can still change any vote.", "ok");
  else if (list.done > 0) setStatus("Welcome back: resuming at the first scene you have not rated.", "info");
}

function logout() {
  localStorage.removeItem("sice-rater");
  state.rater = null;
  $("work").hidden = true;
  $("scene-nav").hidden = true;
  $("rater-info").hidden = true;
  $("login").hidden = false;
  $("rater-input").focus();
}

// ---------------------------------------------------------------- scenes
function updateSceneMarks() {
  const options = $("scene-select").options;
  state.scenes.forEach((s, i) => {
    options[i].textContent = (s.voted ? "✓ " : "    ") + s.name;
  });
  const done = state.scenes.filter((s) => s.voted).length;
  $("progress").textContent = "Scene " + (state.index + 1) + " of " + state.scenes.length +
    " · " + done + " rated";
}

async function showScene(index) {
  index = Math.max(0, Math.min(state.scenes.length - 1, index));
  state.wanted = index;
  const load = ++state.loads;
  const name = state.scenes[index].name;
  const scene = await api(sceneUrl(name) + "?rater=" + encodeURIComponent(state.rater));
  if (load !== state.loads) return;  // a later navigation superseded this one
  state.index = index;
  state.scene = scene;
  const voted = scene.candidates.findIndex((c) => scene.vote.candidate === c.id);
  state.current = voted >= 0 ? voted : 0;
  state.other = scene.candidates.length > 1 ? (state.current + 1) % scene.candidates.length : state.current;
  state.frame = -1;
  $("scene-select").value = String(index);
  $("scene-title").textContent = "Scene " + scene.name;
  updateSceneMarks();
  buildViewer();
  buildFrames();
  render();
}

function candidateUrl(c) {
  return sceneUrl(state.scene.name) + "/candidates/" + encodeURIComponent(c.id);
}

function buildViewer() {
  const viewer = $("viewer");
  viewer.replaceChildren();
  state.scene.candidates.forEach((c, i) => {
    const fig = document.createElement("figure");
    fig.className = "candidate";
    fig.dataset.index = String(i);
    const img = document.createElement("img");
    img.src = candidateUrl(c);
    img.alt = "candidate " + c.label;
    img.draggable = false;
    img.addEventListener("load", () => renderZoom());
    img.addEventListener("pointermove", (e) => pointAt(e, img));
    const caption = document.createElement("figcaption");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = c.label;
    const mark = document.createElement("span");
    mark.className = "mark";
    caption.append(label, mark);
    fig.append(img, caption);
    fig.addEventListener("click", () => { choose(i); });
    fig.addEventListener("dblclick", () => { choose(i); vote(state.scene.candidates[i].id); });
    viewer.append(fig);
  });
  const zoom = $("zoom");
  zoom.replaceChildren(...state.scene.candidates.map((c, i) => {
    const box = document.createElement("div");
    box.className = "zoombox";
    box.dataset.index = String(i);
    const tag = document.createElement("span");
    tag.textContent = c.label;
    box.append(tag);
    return box;
  }));
}

function buildFrames() {
  const frames = $("frames");
  frames.replaceChildren(...state.scene.frames.map((f, k) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = sceneUrl(state.scene.name) + "/frames/" + k;
    img.alt = "source frame " + f.label;
    const caption = document.createElement("figcaption");
    caption.textContent = f.label;
    fig.append(img, caption);
    fig.addEventListener("click", () => showFrame(k));
    return fig;
  }));
  $("frames-section").hidden = state.scene.frames.length === 0;
}

// ---------------------------------------------------------------- display
function visible() {
  if (state.mode === "grid") return state.scene.candidates.map((_, i) => i);
  if (state.mode === "side") return state.current === state.other ? [state.current] : [state.current, state.other];
  return [state.current];
}

function render() {
  const shown = new Set(visible());
  const votedId = state.scene.vote.voted ? state.scene.vote.candidate : undefined;
  $("viewer").className = state.mode;
  for (const fig of $("viewer").children) {
    const i = Number(fig.dataset.index);
    fig.hidden = !shown.has(i);
    fig.classList.toggle("current", i === state.current);
    fig.classList.toggle("voted", state.scene.candidates[i].id === votedId);
    fig.querySelector(".mark").textContent =
      (state.scene.candidates[i].id === votedId ? " ✓ your vote" : "") + (i === state.current ? " · current" : "");
    // Side by side: the current one always on the left.
    fig.style.order = i === state.current ? "0" : "1";
  }
  for (const box of $("zoom").children) {
    const i = Number(box.dataset.index);
    box.hidden = !shown.has(i);
    box.classList.toggle("current", i === state.current);
    box.style.order = i === state.current ? "0" : "1";
  }
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.classList.toggle("active", button.dataset.mode === state.mode);
  }
  $("current-label").textContent = state.scene.candidates.length ? state.scene.candidates[state.current].label : "";
  $("none-button").classList.toggle("voted", state.scene.vote.voted && state.scene.vote.candidate === null);
  renderZoom();
}

function pointAt(event, img) {
  if (state.zoom.frozen) return;
  const rect = img.getBoundingClientRect();
  // object-fit: contain letterboxes the picture inside the element: map to picture coordinates.
  const scale = Math.min(rect.width / img.naturalWidth, rect.height / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  const x0 = rect.left + (rect.width - w) / 2, y0 = rect.top + (rect.height - h) / 2;
  state.zoom.fx = Math.max(0, Math.min(1, (event.clientX - x0) / w));
  state.zoom.fy = Math.max(0, Math.min(1, (event.clientY - y0) / h));
  renderZoom();
}

function renderZoom() {
  if (!state.scene) return;
  const dpr = window.devicePixelRatio || 1;  // one image pixel per screen (device) pixel
  const images = $("viewer").querySelectorAll("img");
  for (const box of $("zoom").children) {
    const img = images[Number(box.dataset.index)];
    if (!img || !img.naturalWidth) continue;
    const w = img.naturalWidth / dpr, h = img.naturalHeight / dpr;
    const x = state.zoom.fx * w - box.clientWidth / 2, y = state.zoom.fy * h - box.clientHeight / 2;
    box.style.backgroundImage = "url(\"" + img.src + "\")";
    box.style.backgroundSize = w + "px " + h + "px";
    box.style.backgroundPosition = (-x) + "px " + (-y) + "px";
  }
  $("zoom-hint").textContent = state.zoom.frozen ? "frozen (Z to follow the pointer again)"
                                                 : "point at an image; Z freezes the spot";
}

function choose(i) {
  if (i < 0 || i >= state.scene.candidates.length) return;
  if (i === state.other) state.other = state.current;
  state.current = i;
  if (state.other === state.current && state.scene.candidates.length > 1) {
    state.other = (i + 1) % state.scene.candidates.length;
  }
  render();
}

function cycleOther(step) {
  const n = state.scene.candidates.length;
  if (n < 2) return;
  let j = state.other;
  do { j = (j + step + n) % n; } while (j === state.current);
  state.other = j;
  render();
}

function swap() {
  [state.current, state.other] = [state.other, state.current];
  render();
}

function setMode(mode) {
  state.mode = mode;
  render();
}

function showFrame(k) {
  const n = state.scene.frames.length;
  if (n === 0) return;
  state.frame = ((k % n) + n) % n;
  $("overlay-img").src = sceneUrl(state.scene.name) + "/frames/" + state.frame;
  $("overlay-caption").textContent = "Source frame " + state.scene.frames[state.frame].label +
    " (" + (state.frame + 1) + " of " + n + ") — R: next, Esc: close";
  $("overlay").hidden = false;
}

function closeOverlay() {
  $("overlay").hidden = true;
  state.frame = -1;
}

// ---------------------------------------------------------------- voting
async function vote(candidateId) {
  if (state.busy || !state.scene) return;
  state.busy = true;
  const scene = state.scene, index = state.index;
  const label = candidateId === null ? "none acceptable"
                                     : scene.candidates.find((c) => c.id === candidateId).label;
  setStatus("Saving…", "info");
  try {
    const saved = await api("/api/votes", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({rater: state.rater, scene: scene.name, candidate: candidateId}),
    });
    // Only now, after the server committed it, is the vote shown as saved.
    scene.vote = {voted: true, candidate: saved.candidate};
    state.scenes[index].voted = true;
    setStatus("Saved: " + label + " for scene " + scene.name + " (" + saved.done + " of " + saved.total + " rated)", "ok");
    updateSceneMarks();
    if (state.wanted === index) {  // unless the rater moved on while the vote was being saved
      if (index + 1 < state.scenes.length) {
        await showScene(index + 1);
      } else {
        render();
        if (saved.done === saved.total) setStatus("All " + saved.total + " scenes rated. Thank you! " +
                                                  "You can still go back and change any vote.", "ok");
      }
    }
  } catch (error) {
    setStatus("NOT saved: " + error.message, "error");
  } finally {
    state.busy = false;
  }
}

function go(step) {
  return showScene(state.wanted + step);
}

function nextUnrated() {
  const n = state.scenes.length;
  for (let step = 1; step <= n; step++) {
    const j = (state.index + step) % n;
    if (!state.scenes[j].voted) return showScene(j);
  }
  setStatus("Every scene is rated.", "ok");
}

// ---------------------------------------------------------------- keys
function onKey(event) {
  const help = $("help");
  if (event.key === "Escape") {
    if (help.open) help.close();
    closeOverlay();
    return;
  }
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "?") { help.open ? help.close() : help.showModal(); event.preventDefault(); return; }
  if (!state.scene || help.open) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const actions = {
    "Enter": () => state.scene.candidates.length && vote(state.scene.candidates[state.current].id),
    "0": () => vote(null), "x": () => vote(null),
    "g": () => setMode("grid"), "s": () => setMode("side"), "f": () => setMode("flip"),
    "Tab": () => cycleOther(event.shiftKey ? -1 : 1),
    " ": swap,
    "z": () => { state.zoom.frozen = !state.zoom.frozen; renderZoom(); },
    "r": () => showFrame(state.frame + 1),
    "ArrowRight": () => go(1), "n": () => go(1),
    "ArrowLeft": () => go(-1), "p": () => go(-1),
    "u": nextUnrated,
  };
  for (let d = 1; d <= 9; d++) actions[String(d)] = () => choose(d - 1);
  const action = actions[key];
  if (!action) return;
  event.preventDefault();
  report(Promise.resolve().then(action));
}

// ---------------------------------------------------------------- wiring
function report(promise) {
  Promise.resolve(promise).catch((error) => setStatus(error.message, "error"));
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    report(login($("rater-input").value).catch((error) => {
      $("login").querySelector("p").textContent = "Cannot start: " + error.message;
    }));
  });
  $("change-rater").addEventListener("click", logout);
  $("prev").addEventListener("click", () => report(go(-1)));
  $("next").addEventListener("click", () => report(go(1)));
  $("scene-select").addEventListener("change", (e) => {
    e.target.blur();
    report(showScene(Number(e.target.value)));
  });
  $("vote-button").addEventListener("click", () => report(vote(state.scene.candidates[state.current].id)));
  $("none-button").addEventListener("click", () => report(vote(null)));
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("help-button").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  $("overlay").addEventListener("click", closeOverlay);
  document.addEventListener("keydown", onKey);
  // A focused button would also react to Enter/Space: give the keys back to the page.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button) button.blur();
  });
  window.addEventListener("resize", renderZoom);
  const saved = localStorage.getItem("sice-rater");
  if (saved) report(login(saved).catch(logout));
});
