// medcrypt reader study: the coordinator's page (progress, early opening, ingest, tally).
"use strict";
(function () {
  const token = decodeURIComponent(location.hash.replace(/^#/, ""));
  const $ = (id) => document.getElementById(id);

  function api(path, body) {
    const opts = { headers: { Authorization: "Bearer " + token }, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts);
  }

  function banner(text) {
    $("banner").hidden = !text;
    $("banner").textContent = text || "";
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.append(td);
    return td;
  }

  async function refresh() {
    if (!token) return banner("Open the coordinator link you were given: it holds your access key.");
    let resp;
    try {
      resp = await api("/api/coordinator");
    } catch (e) {
      return banner("The study server cannot be reached.");
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) return banner(data.error || "Refused (" + resp.status + ").");
    banner("");
    $("title").textContent = "Reader study " + data.study + ": coordinator";
    $("today").textContent = "today " + data.today;
    const tbody = $("sessions").querySelector("tbody");
    tbody.textContent = "";
    for (const s of data.sessions) {
      const tr = document.createElement("tr");
      tr.dataset.reader = s.reader;
      tr.dataset.session = String(s.session);
      cell(tr, s.reader);
      cell(tr, String(s.session));
      cell(tr, s.answered + " / " + s.total).dataset.field = "progress." + s.reader + "." + s.session;
      cell(tr, s.finished_at ? s.finished_at.slice(0, 16).replace("T", " ") : "");
      cell(tr, s.not_before);
      let timing = s.timing;
      if (s.waiting_for_washout) timing = "waiting for the washout";
      if (s.opened_early) timing += " (opened early by the coordinator)";
      const t = cell(tr, timing, s.timing === "early" || s.timing === "late" ? s.timing : "");
      t.title = s.timing_detail;
      t.dataset.field = "timing." + s.reader + "." + s.session;
      const actions = cell(tr, "");
      if (s.reopened_at && s.reopened_at.length) {
        t.textContent += " (reopened by the coordinator " + s.reopened_at.map((w) => w.slice(0, 16).replace("T", " ")).join(", ") + ")";
      }
      if (s.finished_at) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Reopen";
        b.dataset.action = "reopen." + s.reader + "." + s.session;
        b.title = "Let " + s.reader + " work on session " + s.session + " again (recorded)";
        b.addEventListener("click", () => reopen(s.reader, s.session));
        actions.append(b);
      }
      if (s.session === 2 && s.waiting_for_washout) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = "Open early";
        b.title = "Let " + s.reader + " read session 2 before " + s.not_before + " (recorded)";
        b.addEventListener("click", () => openEarly(s.reader));
        actions.append(b);
      }
      tbody.append(tr);
    }
    const bl = data.blinding;
    $("blinding").textContent = bl.summary;
    $("blinding").className = bl.separable ? "late" : "";
  }

  async function openEarly(reader) {
    if (!window.confirm("Open session 2 for " + reader + " before its washout ends? This is recorded.")) return;
    const resp = await api("/api/coordinator/open-early", { reader: reader });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) banner(data.error || "Refused (" + resp.status + ").");
    refresh();
  }

  async function reopen(reader, session) {
    if (!window.confirm("Reopen session " + session + " of " + reader + "? This is recorded.")) return;
    const resp = await api("/api/coordinator/reopen", { reader: reader, session: session });
    const data = await resp.json().catch(() => ({}));
    banner(resp.ok ? "" : data.error || "Refused (" + resp.status + ").");
    refresh();
  }

  // The report arrives as HTML built and escaped by the server; its chart is fetched with the
  // token (an <img> cannot send it) and shown from a blob: URL.
  async function showReport(html) {
    const box = $("report");
    box.innerHTML = html;
    for (const img of box.querySelectorAll("img")) {
      const src = img.getAttribute("src");
      img.removeAttribute("src");
      const resp = await api(src).catch(() => null);
      if (resp && resp.ok) img.src = URL.createObjectURL(await resp.blob());
      else img.alt = "the chart could not be loaded";
    }
  }

  async function run(path, button) {
    button.disabled = true;
    $("result").textContent = "running ...";
    $("report").textContent = "";
    try {
      const resp = await api(path, {});
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        $("result").textContent = (data.error || "failed (" + resp.status + ")") +
          (data.problems ? "\n  " + data.problems.join("\n  ") : "");
        return;
      }
      const ing = data.ingest || data;
      const lines = ing.stored.map((s) => "stored " + s.n_answers + " answers: " + s.file);
      lines.push(ing.skipped.length + " web session(s) already ingested");
      $("result").textContent = lines.join("\n");
      if (data.report_html) await showReport(data.report_html);
    } catch (e) {
      $("result").textContent = "The study server cannot be reached.";
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  $("ingest").addEventListener("click", () => run("/api/coordinator/ingest", $("ingest")));
  $("tally").addEventListener("click", () => run("/api/coordinator/tally", $("tally")));
  refresh();
  setInterval(refresh, 5000);
})();
