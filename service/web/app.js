// The seqtune page: a thin client of the service's own JSON API (same origin).
//   POST /metadata          tasks, champions, limits (serve.max_items, serve.max_input_length)
//   POST /<task>            {"smiles"|"names": [...]} -> one result per input
//   POST /depict            {"smiles"|"names": [...]} -> one RDKit SVG (or error) per input
// A service started with a token (SEQTUNE_API_TOKEN) answers 401 without it: the page then asks
// for it and sends it as `Authorization: Bearer` (kept in sessionStorage: this tab only).
// No framework, no CDN; user text only ever goes into textContent, SVG only into <img> (data: URL).
"use strict";

(() => {
  // What the page knows about each task beyond /metadata: how to draw its answers.
  // answerKind: how /depict reads the answer ("names": with OPSIN, "smiles"), or null: not drawn.
  const TASKS = {
    smiles2iupac: {
      title: "SMILES → IUPAC name",
      answerKind: "names",
      inputCaption: "input structure",
      answerCaption: "structure OPSIN reads from the name",
      verifiedMeans: "OPSIN parses the name back to this exact structure",
      examples: ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@@H](N)C(=O)O", "not a smiles"],
    },
    smiles2formula: {
      title: "SMILES → molecular formula",
      answerKind: null,
      inputCaption: "input structure",
      verifiedMeans: "the formula equals RDKit's formula of this structure",
      examples: ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CC"],
    },
    iupac2smiles: {
      title: "IUPAC name → SMILES",
      answerKind: "smiles",
      inputCaption: "structure OPSIN reads from the name",
      answerCaption: "the answer's structure",
      verifiedMeans: "the SMILES is the structure OPSIN reads from the name",
      examples: ["ethanol", "phenol", "N-(4-hydroxyphenyl)acetamide", "2-aminopropanoic acid"],
    },
  };
  const GENERIC = { answerKind: null, inputCaption: "input structure", verifiedMeans: "the task's own check passed", examples: [] };

  const $ = (id) => document.getElementById(id);
  const els = {
    form: $("form"), task: $("task"), taskHelp: $("task-help"), inputs: $("inputs"), inputsLabel: $("inputs-label"),
    submit: $("submit"), examples: $("examples"), csvFile: $("csv-file"), download: $("download"),
    copyAll: $("copy-all"), limits: $("limits"), status: $("status"), champion: $("champion"), results: $("results"),
    tokenForm: $("token-form"), token: $("token"),
  };
  const TOKEN_KEY = "seqtune-api-token";
  const state = { meta: null, busy: false, last: null, token: "" };

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title" || k === "type") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function setStatus(text, kind = "info") {
    els.status.textContent = text;
    els.status.dataset.kind = kind;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ------------------------------------------------------------------ the token (only when the service has one)

  class AuthError extends Error {}

  const storedToken = () => { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } };

  // Show the token field and resolve with what the user enters (stored for this tab).
  function askToken(message) {
    els.tokenForm.hidden = false;
    setStatus(message, "error");
    els.token.focus();
    return new Promise((resolve) => {
      els.tokenForm.addEventListener("submit", function onSubmit(event) {
        event.preventDefault();
        const token = els.token.value.trim();
        if (!token) return;
        try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* storage off: this page load only */ }
        state.token = token;
        els.token.value = "";
        els.tokenForm.hidden = true;
        els.tokenForm.removeEventListener("submit", onSubmit);
        setStatus("");
        resolve(token);
      });
    });
  }

  // POST JSON; a 503 (the batcher shed the request) is retried after its Retry-After, twice.
  // A 401 throws AuthError: the caller asks for the token.
  async function postJSON(path, body) {
    for (let attempt = 0; ; attempt++) {
      const headers = { "Content-Type": "application/json", Accept: "application/json" };
      if (state.token) headers.Authorization = `Bearer ${state.token}`;
      const resp = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
      if (resp.status === 401) {
        throw new AuthError(state.token ? "The service refused this API token: enter the right one."
          : "This service needs its API token: enter it above.");
      }
      if (resp.status === 503 && attempt < 2) {
        const wait = Math.min(30, Number(resp.headers.get("Retry-After")) || 1);
        setStatus(`The service is busy: retrying in ${wait} s…`, "warn");
        await sleep(wait * 1000);
        continue;
      }
      let data = null;
      try { data = await resp.json(); } catch (e) { /* not JSON: say the status */ }
      if (!resp.ok) {
        const msg = data && (Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ")
          : data.error || data.detail || JSON.stringify(data));
        throw new Error(`${path}: HTTP ${resp.status}${msg ? `: ${msg}` : ""}`);
      }
      return data;
    }
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) { // not a secure context (e.g. served on a LAN address): the old way
      const area = el("textarea", { value: text, readOnly: true });
      area.style.position = "fixed"; area.style.opacity = "0";
      document.body.append(area); area.select();
      document.execCommand("copy"); area.remove();
    }
    if (button) {
      const old = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = old; }, 1200);
    }
  }

  // RFC 4180 CSV: quoted fields, "" escapes, CRLF or LF, a UTF-8 BOM ignored.
  function parseCSV(text) {
    text = text.replace(/^\uFEFF/, "");
    const rows = []; let row = []; let field = ""; let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
        else if (c === '"') quoted = false;
        else field += c;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === ",") { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
      } else field += c;
    }
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows.filter((r) => r.some((f) => f.trim() !== ""));
  }

  const csvField = (v) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const toCSV = (rows) => rows.map((r) => r.map(csvField).join(",")).join("\r\n") + "\r\n";

  // The inputs of a CSV: the column named like the task's field (smiles, names, name, input),
  // else the first column (its first row kept unless it is such a header).
  function csvInputs(rows, field) {
    if (!rows.length) return [];
    const wanted = [field, field.replace(/s$/, ""), "input", "smiles", "names", "name", "iupac"];
    const header = rows[0].map((h) => h.trim().toLowerCase());
    const col = header.findIndex((h) => wanted.includes(h));
    if (col >= 0) return rows.slice(1).map((r) => (r[col] || "").trim());
    return rows.map((r) => (r[0] || "").trim());
  }

  const fmt = (v) => (typeof v !== "number" ? String(v)
    : Number.isInteger(v) && Math.abs(v) > 1 ? String(v) : v.toFixed(3));

  // ------------------------------------------------------------------ metadata: tasks, champion, limits

  const info = (task) => TASKS[task] || GENERIC;
  const field = (task) => state.meta.serve.input_fields[task];

  async function loadMetadata() {
    for (;;) {
      try {
        state.meta = await postJSON("/metadata", {});
        break;
      } catch (e) {
        if (e instanceof AuthError) { await askToken(e.message); continue; }
        setStatus(`Waiting for the service (${e.message})…`, "warn");
        await sleep(2000);
      }
    }
    const tasks = Object.keys(state.meta.tasks);
    els.task.replaceChildren(...tasks.map((t) => el("option", { value: t, text: `${t}${TASKS[t] ? ` — ${TASKS[t].title}` : ""}` })));
    const wanted = new URLSearchParams(location.search).get("task");
    if (wanted && tasks.includes(wanted)) els.task.value = wanted;
    els.task.disabled = false;
    els.submit.disabled = false;
    const s = state.meta.serve;
    els.limits.textContent = `Up to ${s.max_items} inputs of at most ${s.max_input_length} characters per run.`;
    setStatus("");
    onTaskChange();
  }

  function onTaskChange() {
    const task = els.task.value;
    const f = field(task);
    els.inputsLabel.textContent = f === "smiles" ? "SMILES, one per line" : "Names, one per line";
    els.inputs.placeholder = (info(task).examples.slice(0, 3).join("\n")) || "";
    els.taskHelp.textContent = `verified: ${info(task).verifiedMeans}`;
    renderChampion(task);
  }

  function metricTable(rows, head, primary) {
    const table = el("table", { class: "metrics" });
    table.append(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h, class: h === primary ? "primary" : null })))));
    table.append(el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c, i) => el(i ? "td" : "th", { text: fmt(c), scope: i ? null : "row", class: head[i] === primary ? "primary" : null }))))));
    return table;
  }

  function renderChampion(task) {
    const m = state.meta.tasks[task];
    const primary = m.primary_metric;
    const dl = el("dl", { class: "facts" });
    const fact = (k, v) => { if (v !== null && v !== undefined && v !== "") dl.append(el("dt", { text: k }), el("dd", { text: String(v) })); };
    fact("model", m.model);
    fact("version", m.version);
    fact("base model", m.base_model);
    fact("method", m.method);
    fact("decoding", m.decoding);
    fact("precision", m.precision);
    fact("BentoML model", m.bento_model);
    fact("test set", m.test_hash);

    // Flat eval metrics: "structure_match", ...; real molecules by band: "real.3-12.structure_match".
    const metrics = m.metrics || {};
    const test = []; const bands = {}; const bandMetrics = new Set();
    for (const [k, v] of Object.entries(metrics)) {
      const real = /^real\.([^.]+)\.(.+)$/.exec(k);
      if (real) { (bands[real[1]] ||= {})[real[2]] = v; bandMetrics.add(real[2]); }
      else if (typeof v === "number" && !k.startsWith("real")) test.push([k, v]);
    }
    test.sort((a, b) => (b[0] === primary) - (a[0] === primary) || a[0].localeCompare(b[0]));
    const parts = [el("h3", { text: `${task}: ${m.model} v${m.version}` }), dl];
    if (test.length) {
      parts.push(el("h4", { text: "Test-set scores" }), metricTable(test, ["metric", "score"], null));
    } else {
      parts.push(el("p", { class: "help", text: "No test-set scores recorded for this model." }));
    }
    const bandNames = Object.keys(bands).sort((a, b) => parseInt(a, 10) - parseInt(b, 10) || a.localeCompare(b));
    if (bandNames.length) {
      const cols = [...bandMetrics].sort((a, b) => (b === primary) - (a === primary) || (b === "n") - (a === "n") || a.localeCompare(b));
      parts.push(el("h4", { text: "Real molecules (never trained on), by heavy-atom band" }),
        el("div", { class: "scroll" }, metricTable(bandNames.map((b) => [b, ...cols.map((c) => bands[b][c] ?? "")]), ["band", ...cols], primary)));
    }
    els.champion.replaceChildren(...parts);
    els.champion.dataset.task = task;
  }

  // ------------------------------------------------------------------ a run

  function readInputs() {
    return els.inputs.value.split(/\r?\n/).map((s) => s.trim()).filter((s) => s !== "");
  }

  // /depict for `items` (null entries are not drawn): one {svg|error} per entry, never throws.
  async function depict(kind, items) {
    const idx = items.map((x, i) => (x === null ? -1 : i)).filter((i) => i >= 0);
    const out = items.map(() => null);
    if (!idx.length) return out;
    try {
      const res = await postJSON("/depict", { [kind]: idx.map((i) => items[i]) });
      idx.forEach((i, j) => { out[i] = res[j]; });
    } catch (e) {
      idx.forEach((i) => { out[i] = { error: `no drawing: ${e.message}` }; });
    }
    return out;
  }

  function figure(role, caption, d) {
    const fig = el("figure", { class: "depiction", "data-role": role });
    if (d === null || d === undefined) return null;
    if (d.svg) {
      const img = el("img", { alt: `${caption}${d.smiles ? `: ${d.smiles}` : ""}`, width: 200, height: 200, decoding: "sync" });
      img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(d.svg)}`;
      fig.append(img);
    } else {
      fig.append(el("p", { class: "depict-error", text: d.error || "no drawing" }));
    }
    fig.append(el("figcaption", { text: caption }, d.smiles ? el("code", { class: "smiles", text: d.smiles }) : null));
    return fig;
  }

  function badge(r) {
    if (r.error) return el("span", { class: "badge error", text: "error" });
    if (r.verified === true) return el("span", { class: "badge verified", text: "✓ verified", title: info(r.task).verifiedMeans });
    if (r.verified === false) return el("span", { class: "badge unverified", text: "not verified", title: `not proved: ${info(r.task).verifiedMeans} did not hold` });
    return el("span", { class: "badge unchecked", text: "not checked", title: "the service could not check this answer" });
  }

  function renderResult(r, i) {
    const state_ = r.error ? "error" : r.verified === true ? "verified" : r.verified === false ? "unverified" : "unchecked";
    const li = el("li", { class: "result", "data-index": String(i), "data-state": state_ });
    const copy = r.output ? el("button", { type: "button", class: "copy", text: "Copy", title: "copy the answer" }) : null;
    if (copy) copy.addEventListener("click", () => copyText(r.output, copy));
    const latency = r.latency_ms === null ? "not sent" : `${Math.round(r.latency_ms)} ms${r.batch > 1 ? ` (one request of ${r.batch})` : ""}`;
    li.append(...[
      el("div", { class: "head" },
        el("code", { class: "input", text: r.input }),
        badge(r),
        el("span", { class: "latency", text: latency, title: "round trip of the request that answered this input" })),
      r.output !== null && r.output !== undefined
        ? el("div", { class: "answer" }, el("code", { class: "output", text: r.output }), copy)
        : null,
      r.error ? el("p", { class: "error-text", text: r.error }) : null,
    ].filter(Boolean));
    const figs = [figure("input", info(r.task).inputCaption, r.inputDepiction),
      figure("answer", info(r.task).answerCaption || "answer", r.answerDepiction)].filter(Boolean);
    if (figs.length) li.append(el("div", { class: "depictions" }, ...figs));
    return li;
  }

  async function run(event) {
    event.preventDefault();
    if (state.busy || !state.meta) return;
    const task = els.task.value;
    const f = field(task);
    const { max_items: maxItems, max_input_length: maxLen } = state.meta.serve;
    const inputs = readInputs();
    if (!inputs.length) { setStatus("Paste at least one input (one per line).", "error"); return; }
    if (inputs.length > maxItems) {
      setStatus(`${inputs.length} inputs: the service takes at most ${maxItems} per run. Split the list.`, "error");
      return;
    }
    // Over-long inputs would fail the whole request (a 400): they get their own error here,
    // worded as the service words it, and the rest are sent.
    const tooLong = (s) => s.length > maxLen;
    const send = inputs.filter((s) => !tooLong(s));
    state.busy = true;
    els.submit.disabled = true;
    els.results.setAttribute("aria-busy", "true");
    setStatus(`Running ${task} on ${send.length} input${send.length === 1 ? "" : "s"}…`);
    try {
      let answers = [];
      let latency = null;
      const inputDraw = depict(f, inputs.map((s) => (tooLong(s) ? null : s)));
      if (send.length) {
        const t0 = performance.now();
        answers = await postJSON(`/${task}`, { [f]: send });
        latency = performance.now() - t0;
      }
      let k = 0;
      const results = inputs.map((s) => (tooLong(s)
        ? { task, input: s, output: null, valid: false, verified: null, model: null, version: null,
            error: `input too long (${s.length} characters; at most ${maxLen})`, latency_ms: null, batch: 0 }
        : { task, ...answers[k++], latency_ms: latency, batch: send.length }));
      const inputDepictions = await inputDraw;
      const kind = info(task).answerKind;
      const answerDepictions = kind
        ? await depict(kind, results.map((r) => (r.valid && r.output ? r.output : null)))
        : results.map(() => null);
      results.forEach((r, i) => {
        r.inputDepiction = r.valid ? inputDepictions[i] : null;
        r.answerDepiction = answerDepictions[i];
      });
      state.last = { task, results };
      els.results.replaceChildren(...results.map(renderResult));
      const nVer = results.filter((r) => r.verified === true).length;
      const nErr = results.filter((r) => r.error).length;
      setStatus(`${results.length} answered in ${latency === null ? "–" : `${Math.round(latency)} ms`}: `
        + `${nVer} verified, ${nErr} with errors.`, "ok");
      els.download.disabled = false;
      els.copyAll.disabled = false;
    } catch (e) {
      if (e instanceof AuthError) askToken(e.message); // the next Run sends the new token
      else setStatus(e.message, "error");
    } finally {
      state.busy = false;
      els.submit.disabled = false;
      els.results.removeAttribute("aria-busy");
      els.results.dataset.done = String(Date.now());
    }
  }

  // ------------------------------------------------------------------ CSV, copy, examples

  function download() {
    if (!state.last) return;
    const head = ["task", "input", "output", "valid", "verified", "error", "model", "version", "latency_ms"];
    const rows = state.last.results.map((r) => [state.last.task, r.input, r.output, r.valid, r.verified, r.error,
      r.model, r.version, r.latency_ms === null ? "" : Math.round(r.latency_ms)]);
    const blob = new Blob([toCSV([head, ...rows])], { type: "text/csv;charset=utf-8" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `seqtune-${state.last.task}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  async function upload() {
    const file = els.csvFile.files[0];
    if (!file) return;
    const values = csvInputs(parseCSV(await file.text()), field(els.task.value)).filter((s) => s !== "");
    els.csvFile.value = "";
    els.inputs.value = values.join("\n");
    const max = state.meta.serve.max_items;
    setStatus(values.length > max
      ? `${file.name}: ${values.length} inputs, more than the ${max} a run takes: keep at most ${max}.`
      : `${file.name}: ${values.length} input${values.length === 1 ? "" : "s"} loaded. Run them.`, values.length > max ? "error" : "info");
  }

  function copyAll() {
    if (!state.last) return;
    copyText(state.last.results.map((r) => `${r.input}\t${r.output ?? ""}\t${r.verified === true ? "verified" : ""}`).join("\n"), els.copyAll);
  }

  els.form.addEventListener("submit", run);
  els.task.addEventListener("change", onTaskChange);
  els.examples.addEventListener("click", () => { els.inputs.value = info(els.task.value).examples.join("\n"); });
  els.csvFile.addEventListener("change", upload);
  els.download.addEventListener("click", download);
  els.copyAll.addEventListener("click", copyAll);
  window.seqtunePage = { parseCSV, toCSV, csvInputs }; // for the browser tests
  state.token = storedToken();
  loadMetadata();
})();
