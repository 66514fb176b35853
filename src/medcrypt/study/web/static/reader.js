// medcrypt reader study: the reader's page. The access token is the URL fragment (never sent
// to the server as part of a URL); every request carries it as a bearer header.
// Answers not yet saved by the server wait in the browser's localStorage (under a hash of the
// token, never the token) and are sent again when the page opens; the server stores each click
// once by its ID, so sending one twice is harmless.
"use strict";
(function () {
  const token = decodeURIComponent(location.hash.replace(/^#/, ""));
  const $ = (id) => document.getElementById(id);
  const viewer = window.MedcryptViewer;
  // saved: what the server has; answers: saved plus pending (what the page shows)
  const state = {
    data: null, pos: 0, shown: null, saved: {}, answers: {}, pending: [], sending: false,
    view: "none", outboxKey: null, stored: true,
  };
  const cache = new Map(); // image ID -> {w, h, gray: Uint8ClampedArray}

  async function outboxKey() {
    const bytes = new TextEncoder().encode("medcrypt-study-outbox:" + token);
    if (window.crypto && crypto.subtle) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      return "medcrypt-outbox-" + Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    let h1 = 0xdeadbeef, h2 = 0x41c6ce57; // not a secure context: a 53-bit hash (cyrb53)
    for (const b of bytes) {
      h1 = Math.imul(h1 ^ b, 2654435761);
      h2 = Math.imul(h2 ^ b, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return "medcrypt-outbox-c" + (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16);
  }

  function readOutbox() {
    try {
      const items = JSON.parse(localStorage.getItem(state.outboxKey) || "[]");
      return Array.isArray(items) ? items : [];
    } catch (e) {
      return [];
    }
  }

  function writeOutbox() {
    try {
      if (state.pending.length) localStorage.setItem(state.outboxKey, JSON.stringify(state.pending));
      else localStorage.removeItem(state.outboxKey);
      state.stored = true;
    } catch (e) {
      state.stored = false; // storage refused (private mode, full): keep them in the page
    }
  }

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

  function message(text, reader) {
    $("message-text").textContent = text;
    $("progress").textContent = "";
    $("title").textContent = "Reader study" + (reader ? " \u2014 " + reader : "");
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

  function answeredCount(answers) {
    const a = answers || state.answers;
    return state.data.images.filter((iid) => a[iid] !== undefined).length;
  }

  function waiting() {
    const images = new Set(state.data.images);
    return new Set(state.pending.filter((p) => images.has(p.image_id)).map((p) => p.image_id)).size;
  }

  // The counter counts what the server has saved; answers still waiting are named apart.
  function updateProgress() {
    const d = state.data;
    const w = waiting();
    $("progress").textContent = answeredCount(state.saved) + " / " + d.images.length +
      (w ? " (+" + w + " not saved yet)" : "");
    $("title").textContent = "Reader study " + d.study + " \u2014 " + d.reader + ", session " + d.session;
  }

  async function load() {
    if (!token) return message("Open the link you were given: it holds your access key.");
    if (!state.outboxKey) {
      state.outboxKey = await outboxKey();
      const known = new Set(state.pending.map((p) => p.answer_id));
      for (const p of readOutbox()) if (!known.has(p.answer_id)) state.pending.push(p);
    }
    let resp;
    try {
      resp = await api("/api/reader");
    } catch (e) {
      if (state.pending.length) send();
      return message("The study server cannot be reached. Try again in a moment.");
    }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok || body.status !== "open") {
      state.data = null;
      if (state.pending.length) send();
      return message(
        body.message || body.error || "This link does not open a session (" + resp.status + ").",
        body.reader
      );
    }
    state.data = body;
    state.saved = Object.assign({}, body.answers);
    state.answers = Object.assign({}, body.answers);
    for (const p of state.pending) {
      if (body.images.includes(p.image_id)) state.answers[p.image_id] = p.diagnosis;
    }
    state.pos = body.resume_at;
    const firstOpen = state.data.images.findIndex((iid) => state.answers[iid] === undefined);
    if (state.answers[body.images[state.pos]] !== undefined && firstOpen >= 0) state.pos = firstOpen;
    $("instructions-body").innerHTML = body.instructions_html; // built and escaped by the server
    $("prev").hidden = !body.allow_revisions;
    $("keys-back").textContent = body.allow_revisions ? "arrows previous/next" : "Right arrow next";
    buildChoices();
    updateProgress();
    if (answeredCount() === 0) show("instructions");
    else if (firstOpen < 0) openReview();
    else openImage(state.pos);
    if (state.pending.length) send();
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

  async function openImage(pos) {
    const d = state.data;
    state.pos = Math.max(0, Math.min(pos, d.images.length - 1));
    const iid = d.images[state.pos];
    show("viewer");
    $("position").textContent = "Image " + (state.pos + 1) + " of " + d.images.length;
    $("image-id").textContent = iid;
    showChosen();
    try {
      const img = await fetchImage(iid);
      if (d.images[state.pos] === iid && state.view === "viewer") {
        viewer.show(img, state.shown === iid);
        state.shown = iid;
      }
      const next = d.images[state.pos + 1];
      if (next) fetchImage(next).catch(() => {});
    } catch (e) {
      banner("The image could not be loaded (" + e.message + "). Reload the page to try again.");
    }
  }

  function locked(iid) {
    return !state.data.allow_revisions && state.answers[iid] !== undefined;
  }

  function showChosen() {
    const iid = state.data.images[state.pos];
    const chosen = state.answers[iid];
    for (const b of $("choices").children) {
      b.classList.toggle("chosen", b.dataset.diagnosis === chosen);
      b.disabled = locked(iid);
    }
    $("current").textContent = chosen
      ? "Your answer: " + chosen.replace(/_/g, " ") +
        (locked(iid) ? " (answers cannot be changed in this study)" : "")
      : "No answer yet";
  }

  function choose(diagnosis) {
    if (state.view !== "viewer") return;
    const iid = state.data.images[state.pos];
    if (locked(iid)) return;
    state.answers[iid] = diagnosis;
    state.pending.push({ answer_id: newId(), image_id: iid, diagnosis: diagnosis });
    writeOutbox();
    updateProgress();
    showChosen();
    send();
    nextOrReview();
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
          writeOutbox();
          if (state.data && state.data.images.includes(item.image_id)) state.saved[item.image_id] = item.diagnosis;
          if (!state.pending.length) banner("");
          if (state.data) updateProgress();
          continue;
        }
        if (resp && resp.status !== 503 && resp.status < 500 && resp.status !== 401) {
          // refused for good (session handed in, washout, no revisions): say so, drop it
          state.pending.shift();
          writeOutbox();
          banner(body.error || "This answer was refused (" + resp.status + ").");
          continue;
        }
        const why = resp ? body.detail || body.error || "the server answered " + resp.status
          : "the study server cannot be reached";
        const n = state.pending.length;
        banner(
          "Not saved yet: " + why.replace(/[.\s]+$/, "") + ". " + n + " answer(s) " +
          (state.stored
            ? "are kept in this browser and sent again automatically, also if you close this page and open your link later."
            : "are kept in this page and sent again automatically; do not close it.")
        );
        if (state.data) updateProgress();
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
    const w = waiting();
    $("review-summary").textContent =
      answeredCount() + " of " + d.images.length + " images answered" +
      (missing.length ? "; these have no answer yet:" : ". Every image has an answer.") +
      (w ? " (" + w + " not saved yet)" : "");
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
    $("finish").disabled = missing.length > 0 || w > 0;
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
    state.shown = null;
    load();
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
    else if (e.key === "ArrowLeft" && state.data.allow_revisions) openImage(state.pos - 1);
    else if (!viewer.key(e)) return;
    e.preventDefault();
  }

  // the next image; without revisions the next one still unanswered
  function nextOrReview() {
    const d = state.data;
    let next = state.pos + 1;
    if (!d.allow_revisions) while (next < d.images.length && state.answers[d.images[next]] !== undefined) next++;
    if (next < d.images.length) openImage(next);
    else openReview();
  }

  function begin() {
    if (state.pos >= state.data.images.length) openReview();
    else openImage(state.pos);
  }

  function back() {
    if (state.data.allow_revisions || state.answers[state.data.images[state.pos]] === undefined) openImage(state.pos);
    else {
      const open = state.data.images.findIndex((iid) => state.answers[iid] === undefined);
      openImage(open >= 0 ? open : state.pos);
    }
  }

  function toggleInstructions() {
    if (state.view === "instructions") begin();
    else show("instructions");
  }

  function wire() {
    document.addEventListener("keydown", onKey);
    $("begin").addEventListener("click", begin);
    $("show-instructions").addEventListener("click", toggleInstructions);
    $("prev").addEventListener("click", () => state.data.allow_revisions && openImage(state.pos - 1));
    $("next").addEventListener("click", nextOrReview);
    $("to-review").addEventListener("click", openReview);
    $("back").addEventListener("click", back);
    $("finish").addEventListener("click", finish);
    viewer.wire(() => state.view === "viewer");
    window.addEventListener("beforeunload", (e) => {
      if (state.pending.length && !state.stored) e.preventDefault();
    });
  }

  wire();
  load();
})();
