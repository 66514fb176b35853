// medcrypt reader study: the reader's page. The access token is the URL fragment (never sent
// to the server as part of a URL); every request carries it as a bearer header.
"use strict";
(function () {
  const token = decodeURIComponent(location.hash.replace(/^#/, ""));
  const $ = (id) => document.getElementById(id);
  const state = { data: null, pos: 0, answers: {}, pending: [], sending: false, view: "none" };
  const cache = new Map(); // image ID -> {w, h, gray: Uint8ClampedArray}
  const viewer = { width: 256, level: 128, zoom: 1, drag: null };

  function api(path, options) {
    const opts = options || {};
    const headers = { Authorization: "Bearer " + token };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: opts.method || "GET",
      headers: headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      cache: "no-store",
      credentials: "omit",
    });
  }

  function show(view) {
    state.view = view;
    for (const id of ["message", "instructions", "viewer", "review"]) $(id).hidden = id !== view;
    $("show-instructions").hidden = !state.data;
  }

  function message(text) {
    $("message-text").textContent = text;
    show("message");
  }

  function banner(text, ok) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
    b.className = ok ? "ok" : "";
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function answeredCount() {
    return state.data.images.filter((iid) => state.answers[iid] !== undefined).length;
  }

  function updateProgress() {
    const d = state.data;
    $("progress").textContent = answeredCount() + " / " + d.images.length;
    $("title").textContent = "Reader study " + d.study + " \u2014 " + d.reader + ", session " + d.session;
  }

  async function load() {
    if (!token) return message("Open the link you were given: it holds your access key.");
    let resp;
    try {
      resp = await api("/api/reader");
    } catch (e) {
      return message("The study server cannot be reached. Try again in a moment.");
    }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok || body.status !== "open") {
      state.data = null;
      return message(body.message || body.error || "This link does not open a session (" + resp.status + ").");
    }
    state.data = body;
    state.answers = Object.assign({}, body.answers);
    for (const p of state.pending) state.answers[p.image_id] = p.diagnosis;
    state.pos = body.resume_at;
    $("instructions-body").innerHTML = body.instructions_html; // built and escaped by the server
    buildChoices();
    updateProgress();
    if (answeredCount() === 0) show("instructions");
    else if (state.pos >= body.images.length) openReview();
    else openImage(state.pos);
  }

  function buildChoices() {
    const box = $("choices");
    box.textContent = "";
    state.data.classes.forEach((name, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.diagnosis = name;
      const k = document.createElement("kbd");
      k.textContent = String(i + 1);
      b.append(k, document.createTextNode(name.replace(/_/g, " ")));
      b.addEventListener("click", () => choose(name));
      box.append(b);
    });
  }

  async function fetchImage(iid) {
    if (cache.has(iid)) return cache.get(iid);
    const resp = await api("/api/reader/image/" + encodeURIComponent(iid));
    if (!resp.ok) throw new Error("image " + iid + ": " + resp.status);
    const bitmap = await createImageBitmap(await resp.blob());
    const c = document.createElement("canvas");
    c.width = bitmap.width;
    c.height = bitmap.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
    const gray = new Uint8ClampedArray(c.width * c.height);
    for (let i = 0; i < gray.length; i++) gray[i] = rgba[4 * i];
    const img = { w: c.width, h: c.height, gray: gray };
    cache.set(iid, img);
    return img;
  }

  function render() {
    const iid = state.data.images[state.pos];
    const img = cache.get(iid);
    const canvas = $("image");
    if (!img) return;
    const stage = $("stage");
    const fit = Math.max(1, Math.floor(Math.min(stage.clientWidth / img.w, stage.clientHeight / img.h)));
    const scale = fit * viewer.zoom;
    canvas.width = img.w;
    canvas.height = img.h;
    canvas.style.width = img.w * scale + "px";
    canvas.style.height = img.h * scale + "px";
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(img.w, img.h);
    const low = viewer.level - viewer.width / 2;
    const lut = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) lut[v] = ((v - low) / viewer.width) * 255;
    for (let i = 0; i < img.gray.length; i++) {
      const g = lut[img.gray[i]];
      out.data[4 * i] = g;
      out.data[4 * i + 1] = g;
      out.data[4 * i + 2] = g;
      out.data[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    $("zoom").textContent = Math.round(viewer.zoom * 100) + "%";
    $("wl").textContent = "Window " + Math.round(viewer.width) + " \u00b7 level " + Math.round(viewer.level);
  }

  async function openImage(pos) {
    const d = state.data;
    state.pos = Math.max(0, Math.min(pos, d.images.length - 1));
    const iid = d.images[state.pos];
    show("viewer");
    $("position").textContent = "Image " + (state.pos + 1) + " of " + d.images.length;
    $("image-id").textContent = iid;
    showChosen();
    try {
      await fetchImage(iid);
      if (d.images[state.pos] === iid) render();
      const next = d.images[state.pos + 1];
      if (next) fetchImage(next).catch(() => {});
    } catch (e) {
      banner("The image could not be loaded (" + e.message + "). Reload the page to try again.");
    }
  }

  function showChosen() {
    const iid = state.data.images[state.pos];
    const chosen = state.answers[iid];
    for (const b of $("choices").children) b.classList.toggle("chosen", b.dataset.diagnosis === chosen);
    $("current").textContent = chosen ? "Your answer: " + chosen.replace(/_/g, " ") : "No answer yet";
  }

  function choose(diagnosis) {
    if (state.view !== "viewer") return;
    const iid = state.data.images[state.pos];
    state.answers[iid] = diagnosis;
    state.pending.push({ answer_id: newId(), image_id: iid, diagnosis: diagnosis });
    updateProgress();
    showChosen();
    send();
    if (state.pos + 1 < state.data.images.length) openImage(state.pos + 1);
    else openReview();
  }

  async function send() {
    if (state.sending) return;
    state.sending = true;
    try {
      while (state.pending.length) {
        const item = state.pending[0];
        let resp = null;
        let body = {};
        try {
          resp = await api("/api/reader/answer", { method: "POST", body: item });
          body = await resp.json().catch(() => ({}));
        } catch (e) {
          resp = null;
        }
        if (resp && resp.ok) {
          state.pending.shift();
          if (!state.pending.length) banner("");
          continue;
        }
        if (resp && resp.status !== 503 && resp.status < 500) {
          // refused for good (session handed in, washout): say so and reload the state
          state.pending.shift();
          banner(body.error || "This answer was refused (" + resp.status + ").");
          continue;
        }
        const why = resp ? body.error || "the server answered " + resp.status : "the server cannot be reached";
        banner(
          "Not saved yet: " + why + " " + state.pending.length +
          " answer(s) are kept in this page and sent again automatically; do not close it."
        );
        await new Promise((r) => setTimeout(r, 2000));
      }
    } finally {
      state.sending = false;
      if (state.view === "review") openReview();
    }
  }

  function openReview() {
    const d = state.data;
    show("review");
    const missing = [];
    d.images.forEach((iid, i) => {
      if (state.answers[iid] === undefined) missing.push(i);
    });
    $("review-summary").textContent =
      answeredCount() + " of " + d.images.length + " images answered" +
      (missing.length ? "; these have no answer yet:" : ". Every image has an answer.") +
      (state.pending.length ? " (" + state.pending.length + " still being saved)" : "");
    const list = $("unanswered");
    list.textContent = "";
    for (const i of missing) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Image " + (i + 1) + " (" + d.images[i] + ")";
      b.addEventListener("click", () => openImage(i));
      li.append(b);
      list.append(li);
    }
    $("finish").disabled = missing.length > 0 || state.pending.length > 0;
  }

  async function finish() {
    if ($("finish").disabled) return;
    $("finish").disabled = true;
    const resp = await api("/api/reader/finish", { method: "POST", body: { session: state.data.session } }).catch(() => null);
    const body = resp ? await resp.json().catch(() => ({})) : {};
    if (!resp || !resp.ok) {
      banner((body && body.error) || "Handing in failed; try again.");
      return openReview();
    }
    banner("Session " + body.finished + " handed in. Thank you.", true);
    cache.clear();
    load();
  }

  function resetView() {
    viewer.width = 256;
    viewer.level = 128;
    viewer.zoom = 1;
  }

  function zoom(factor) {
    viewer.zoom = Math.max(0.25, Math.min(8, viewer.zoom * factor));
    render();
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (state.view === "instructions" && e.key === "Enter") return begin();
    if (state.view === "review" && e.key === "Enter") return finish();
    if ((e.key === "i" || e.key === "I") && state.data) return toggleInstructions();
    if (state.view !== "viewer") return;
    const n = parseInt(e.key, 10);
    if (n >= 1 && n <= state.data.classes.length) choose(state.data.classes[n - 1]);
    else if (e.key === "ArrowRight") nextOrReview();
    else if (e.key === "ArrowLeft") openImage(state.pos - 1);
    else if (e.key === "+" || e.key === "=") zoom(1.25);
    else if (e.key === "-") zoom(0.8);
    else if (e.key === "r" || e.key === "R") {
      resetView();
      render();
    } else return;
    e.preventDefault();
  }

  function nextOrReview() {
    if (state.pos + 1 < state.data.images.length) openImage(state.pos + 1);
    else openReview();
  }

  function begin() {
    if (state.pos >= state.data.images.length) openReview();
    else openImage(state.pos);
  }

  function toggleInstructions() {
    if (state.view === "instructions") begin();
    else show("instructions");
  }

  function wire() {
    document.addEventListener("keydown", onKey);
    $("begin").addEventListener("click", begin);
    $("show-instructions").addEventListener("click", toggleInstructions);
    $("prev").addEventListener("click", () => openImage(state.pos - 1));
    $("next").addEventListener("click", nextOrReview);
    $("zoom-in").addEventListener("click", () => zoom(1.25));
    $("zoom-out").addEventListener("click", () => zoom(0.8));
    $("reset").addEventListener("click", () => {
      resetView();
      render();
    });
    $("to-review").addEventListener("click", openReview);
    $("back").addEventListener("click", () => openImage(state.pos));
    $("finish").addEventListener("click", finish);
    const stage = $("stage");
    stage.addEventListener("pointerdown", (e) => {
      viewer.drag = { x: e.clientX, y: e.clientY, width: viewer.width, level: viewer.level };
      stage.setPointerCapture(e.pointerId);
    });
    stage.addEventListener("pointermove", (e) => {
      if (!viewer.drag) return;
      viewer.width = Math.max(1, Math.min(512, viewer.drag.width + (e.clientX - viewer.drag.x)));
      viewer.level = Math.max(0, Math.min(255, viewer.drag.level - (e.clientY - viewer.drag.y) / 2));
      render();
    });
    stage.addEventListener("pointerup", () => (viewer.drag = null));
    stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1);
    }, { passive: false });
    window.addEventListener("resize", () => state.view === "viewer" && render());
    window.addEventListener("beforeunload", (e) => {
      if (state.pending.length) e.preventDefault();
    });
  }

  wire();
  load();
})();
