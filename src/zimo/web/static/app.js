// Zimo dashboard: reads the JSON endpoints under /ui/api and renders each page.
// No framework and no CDN: this file ships in the package and works offline.
"use strict";

const $ = (sel) => document.querySelector(sel);
const esc = (s) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (v, d = 4) => (v === null || v === undefined ? "—" : typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(d)) : esc(v));

function authHeaders() {
  const key = localStorage.getItem("zimo-admin-key");
  return key ? { Authorization: "Bearer " + key } : {};
}

function notice(msg) {
  $("#notice").textContent = msg || "";
}

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: { ...(opts.headers || {}), ...authHeaders() } });
  if (res.status === 401 || res.status === 403) {
    notice("This server needs an admin API key: enter it at the top right.");
    throw new Error("auth");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const msg = body.detail || (body.error && body.error.message) || res.statusText;
    notice(msg);
    throw new Error(msg);
  }
  return body;
}

function table(headers, rows) {
  return (
    "<table><thead><tr>" + headers.map((h) => `<th scope="col">${esc(h)}</th>`).join("") + "</tr></thead><tbody>" +
    rows.map((r) => "<tr>" + r.map((c) => (typeof c === "number" ? `<td class="n">${fmt(c)}</td>` : `<td>${c}</td>`)).join("") + "</tr>").join("") +
    "</tbody></table>"
  );
}

// A small line chart in SVG: series = {name: [[x, y], ...]}.
function lineChart(svg, series, opts = {}) {
  const W = 600, H = 220, P = 36;
  const all = Object.values(series).flat();
  if (!all.length) {
    svg.innerHTML = `<text x="20" y="110">no data yet</text>`;
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(0, ...ys), y1 = Math.max(...ys) || 1;
  const sx = (x) => P + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * P);
  const sy = (y) => H - P + 8 - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * P);
  const colors = ["#0b5cad", "#b42318", "#1a7f37", "#9a6700", "#6639ba", "#0a7ea4"];
  let out = `<line x1="${P}" y1="${H - P + 8}" x2="${W - P}" y2="${H - P + 8}" stroke="#8c959f"/>`;
  out += `<text x="4" y="${sy(y1) + 4}" font-size="11">${fmt(y1, 3)}</text><text x="4" y="${sy(y0)}" font-size="11">${fmt(y0, 3)}</text>`;
  if (opts.xlabel) out += `<text x="${W / 2}" y="${H - 2}" font-size="11" text-anchor="middle">${esc(opts.xlabel)}</text>`;
  Object.entries(series).forEach(([name, pts], i) => {
    const d = pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    out += `<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="2"/>`;
    out += `<text x="${W - P - 4}" y="${16 + 14 * i}" font-size="12" text-anchor="end" fill="${colors[i % colors.length]}">${esc(name)}</text>`;
  });
  svg.innerHTML = out;
}

function projectSelect() {
  const sel = $("#project-select");
  const saved = localStorage.getItem("zimo-project");
  if (sel && saved && [...sel.options].some((o) => o.value === saved)) sel.value = saved;
  return sel;
}

// ---------------------------------------------------------------- pages
async function pageProjects() {
  const box = $("#projects");
  const draw = async () => {
    const data = await api("/ui/api/projects");
    box.removeAttribute("aria-busy");
    if (!data.projects.length) {
      box.innerHTML = "<p>No projects: start the server with <code>zimo serve PROJECT_DIR</code>.</p>";
      return;
    }
    box.innerHTML = data.projects.map((p) => {
      if (p.error) return `<div class="card"><h2>${esc(p.name)}</h2><p class="err">${esc(p.error)}</p></div>`;
      const running = p.ui_build && p.ui_build.running;
      const stages = p.stages.map((s) => {
        const st = running && s.state !== "fresh" ? "running" : s.state_ui;
        const last = s.last_run ? `${esc(s.last_run.state)} ${esc((s.last_run.finished_at || "").replace("T", " ").slice(0, 19))}` : "never run";
        return `<div class="stage s-${st}" data-stage="${esc(s.name)}"><b>${esc(s.name)}</b><span class="tag t-${st}">${st}</span><br><small>${last}</small></div>`;
      }).join('<span class="arrow" aria-hidden="true">→</span>');
      const metrics = Object.entries((p.metrics || {}).eval || {}).map(([sys, m]) =>
        [esc(sys), ...Object.values(m).map((v) => (typeof v === "number" ? v : esc(v)))]);
      const mkeys = Object.keys(Object.values((p.metrics || {}).eval || {})[0] || {});
      const err = p.ui_build && p.ui_build.error ? `<p class="err">last build failed: ${esc(p.ui_build.error)}</p>` : "";
      return `<div class="card" data-project="${esc(p.name)}"><h2>${esc(p.name)} <small class="hint">(${esc(p.task)})</small></h2>
        <div class="dag" role="list" aria-label="pipeline stages">${stages}</div>${err}
        <div class="row"><button class="build" data-name="${esc(p.name)}" ${running ? "disabled" : ""}>${running ? "Building…" : "Build"}</button>
        ${p.has_report ? `<a href="/ui/projects/${encodeURIComponent(p.name)}/report">evaluation report</a>` : ""}</div>
        ${mkeys.length ? table(["system", ...mkeys], metrics) : ""}</div>`;
    }).join("");
    box.querySelectorAll("button.build").forEach((b) =>
      b.addEventListener("click", async () => {
        b.disabled = true;
        b.textContent = "Building…";
        await api(`/ui/api/projects/${encodeURIComponent(b.dataset.name)}/build`, { method: "POST" });
        notice(`build of ${b.dataset.name} started`);
        setTimeout(draw, 1000);
      }));
    if (data.projects.some((p) => p.ui_build && p.ui_build.running)) setTimeout(draw, 2000);
  };
  await draw();
}

async function pageDatasets() {
  const sel = projectSelect();
  if (!sel || !sel.value) return notice("No projects on this server.");
  const load = async () => {
    localStorage.setItem("zimo-project", sel.value);
    const d = await api(`/ui/api/projects/${encodeURIComponent(sel.value)}/dataset`);
    const origins = new Set();
    Object.values(d.splits).forEach((s) => Object.keys(s.origin).forEach((o) => origins.add(o)));
    ["human", "teacher", "synthetic", "log"].forEach((o) => origins.add(o));
    const os = [...origins];
    $("#origins").innerHTML = Object.keys(d.splits).length
      ? table(["split", "rows", ...os, "labels"], Object.entries(d.splits).map(([n, s]) =>
          [esc(n), s.rows, ...os.map((o) => s.origin[o] || 0), esc(Object.entries(s.labels).map(([k, v]) => `${k}: ${v}`).join(", "))]))
      : "<p>Not built yet.</p>";
    $("#curate").innerHTML = (d.curate ? table(["step", "kind", "seen", "kept", "changed", "dropped"],
      d.curate.map((s) => [esc(s.name), esc(s.kind), s.seen, s.kept, s.changed, s.dropped])) : "<p>No curate report yet.</p>") +
      (d.has_curate_report ? `<p><a href="/ui/projects/${encodeURIComponent(sel.value)}/curate-report">full curate report</a></p>` : "");
    $("#rejects").innerHTML = Object.keys(d.reject_reasons).length
      ? table(["reason", "rows"], Object.entries(d.reject_reasons).map(([r, n]) => [esc(r), n])) +
        table(["stage", "reason", "text"], d.rejects.slice(0, 50).map((r) => [esc(r.stage), esc(r.reason), esc(r.text)]))
      : "<p>No rejected rows.</p>";
    await search();
  };
  const search = async () => {
    const q = encodeURIComponent($("#sample-q").value);
    const split = $("#sample-split").value;
    const d = await api(`/ui/api/projects/${encodeURIComponent(sel.value)}/samples?split=${split}&q=${q}&limit=50`);
    $("#samples").innerHTML = `<p class="hint">${d.total} matching rows (showing ${d.rows.length})</p>` +
      table(["text", "label", "origin"], d.rows.map((r) => [esc(r.text), esc(r.label), esc(r.origin)]));
  };
  sel.addEventListener("change", load);
  $("#sample-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  await load();
}

let trainSource = null;
async function pageRuns() {
  const sel = projectSelect();
  if (!sel || !sel.value) return notice("No projects on this server.");
  const load = async () => {
    localStorage.setItem("zimo-project", sel.value);
    const name = encodeURIComponent(sel.value);
    const d = await api(`/ui/api/projects/${name}/runs`);
    $("#runs").innerHTML = table(["stage", "state", "artifact", "started", "seconds", "error"],
      d.runs.map((r) => [esc(r.stage), `<span class="tag t-${r.state === "done" ? "fresh" : r.state === "running" ? "running" : "failed"}">${esc(r.state)}</span>`,
        `<code>${esc(r.artifact)}</code>`, esc((r.started_at || "").replace("T", " ")), r.seconds ?? "—", esc(r.error || "")]));
    $("#report-link").innerHTML = d.has_report ? `<a href="/ui/projects/${name}/report">open the evaluation report</a>` : "<p>No report yet.</p>";
    const rows = [...d.train_log];
    const draw = () => {
      const loss = rows.filter((r) => r.loss != null).map((r) => [r.step, r.loss]);
      const dev = rows.filter((r) => r.dev_loss != null).map((r) => [r.step, r.dev_loss]);
      const tps = rows.filter((r) => r.tokens_per_s != null).map((r) => [r.step, r.tokens_per_s]);
      lineChart($("#loss-chart"), dev.length ? { train: loss, dev } : { train: loss }, { xlabel: "step" });
      lineChart($("#tps-chart"), { "tokens/s": tps }, { xlabel: "step" });
      const last = rows[rows.length - 1];
      $("#train-live").textContent = last ? `step ${last.step ?? "?"}, loss ${fmt(last.loss)}, ${fmt(last.tokens_per_s, 1)} tokens/s` : "no training log yet";
    };
    draw();
    if (trainSource) trainSource.close();
    if (!localStorage.getItem("zimo-admin-key") || document.body.dataset.auth === "open") {
      // EventSource cannot send headers: live updates on open servers; others refresh on load.
      trainSource = new EventSource(`/ui/api/projects/${name}/train/stream`);
      let skip = rows.length;
      trainSource.onmessage = (ev) => {
        if (skip > 0) { skip--; return; }
        rows.push(JSON.parse(ev.data));
        draw();
      };
    }
  };
  sel.addEventListener("change", load);
  await load();
}

async function pageModels() {
  const d = await api("/ui/api/models");
  const box = $("#models");
  box.removeAttribute("aria-busy");
  box.innerHTML = d.models.length ? d.models.map((m) => {
    const ev = m.metrics || {};
    const keys = Object.keys(Object.values(ev)[0] || {});
    return `<div class="card"><h2>${esc(m.name)}</h2><p>task: ${esc(m.task)}${m.labels ? " · labels: " + esc(m.labels.join(", ")) : ""} · base: ${esc(m.base || "—")}</p>
      ${keys.length ? table(["system", ...keys], Object.entries(ev).map(([s, v]) => [esc(s), ...keys.map((k) => (typeof v[k] === "number" ? v[k] : esc(v[k])))])) : ""}
      ${m.exports && m.exports.length ? "<h3>Exports</h3>" + table(["file", "MB"], m.exports.map((e) => [esc(e.path), e.bytes / 1e6])) : ""}</div>`;
  }).join("") : "<p>No sub-models served yet.</p>";
  const sel = $("#play-model");
  sel.innerHTML = [...d.models.map((m) => m.name), ...(d.upstream || [])].map((n) => `<option>${esc(n)}</option>`).join("");
  $("#play-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = $("#play-output");
    const btn = e.target.querySelector("button");
    btn.disabled = true;
    out.innerHTML = "<p>…</p>";
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({ model: sel.value, max_tokens: Number($("#play-max").value) || 64,
          messages: [{ role: "user", content: $("#play-input").value }] }),
      });
      const body = await res.json();
      if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
      const z = body.zimo || {};
      const probs = z.label_probs ? " · " + Object.entries(z.label_probs).map(([k, v]) => `${esc(k)} ${v.toFixed(3)}`).join(", ") : "";
      out.innerHTML = `<div class="answer" data-testid="answer">${esc(body.choices[0].message.content)}</div>
        <p class="hint">answered by ${esc(z.model || body.model)} · ${fmt(z.latency_s, 3)} s · cost $${fmt(z.cost_usd, 6)}${probs}</p>`;
    } catch (err) {
      out.innerHTML = `<p class="err">${esc(err.message)}</p>`;
    } finally {
      btn.disabled = false;
    }
  });
}

async function pageGateway() {
  const load = async () => {
    const d = await api(`/ui/api/gateway?hours=${$("#gw-hours").value}`);
    if (!d.enabled) {
      $("#gw-cards").innerHTML = "<p>The request log is off on this server.</p>";
      return;
    }
    const saved = d.cost_saved == null ? "—" : "$" + d.cost_saved.toFixed(4);
    $("#gw-cards").innerHTML = [["requests", d.total], ["errors", d.errors], ["escalated", d.escalated],
      ["cost", "$" + d.cost.toFixed(4)], ["saved vs all-upstream", saved]]
      .map(([k, v]) => `<div class="card"><div class="hint">${k}</div><div class="big" data-metric="${k}">${v}</div></div>`).join("");
    const series = {};
    Object.entries(d.series).forEach(([m, pts]) => (series[m] = pts.map(([t, n]) => [t, n])));
    lineChart($("#gw-series"), series, { xlabel: `time (${d.bucket_s / 60}-minute buckets)` });
    const total = Object.values(d.answered_by).reduce((a, b) => a + b, 0) || 1;
    $("#gw-share").innerHTML = table(["answered by", "requests", "share"], Object.entries(d.answered_by).map(([m, n]) =>
      [esc(m), n, `<div class="bar" style="width:${(100 * n / total).toFixed(1)}%" title="${(100 * n / total).toFixed(1)}%"></div>`]));
    $("#gw-latency").innerHTML = table(["model", "requests", "p50 ms", "p95 ms"],
      Object.entries(d.latency_ms).map(([m, v]) => [esc(m), v.n, v.p50, v.p95]));
    $("#gw-recent").innerHTML = table(["time", "model", "answered by", "status", "ms", "prompt", "response"],
      d.recent.map((r) => [esc((r.time || "").replace("T", " ").slice(0, 19)), esc(r.model), esc(r.answered_by), r.status ?? "—",
        r.latency_ms ?? "—", esc((r.prompt || "").slice(0, 120)), esc((r.response || "").slice(0, 120))]));
  };
  $("#gw-hours").addEventListener("change", load);
  await load();
  await drawCascades();
}

async function drawCascades() {
  const d = await api(`/ui/api/cascade?hours=${$("#gw-hours").value}`);
  if (!d.projects.length) return;
  const pct = (x) => (x == null ? "—" : (100 * x).toFixed(1) + "%");
  const money = (x) => (x == null ? "—" : "$" + x.toFixed(4));
  $("#gw-cascade").innerHTML = d.projects.map((p) =>
    `<h3>${esc(p.project)}</h3>` +
    table(["tier", "threshold", "share answered"], p.tiers.map((t, i) =>
      [esc(t), p.thresholds[i] == null ? "last" : p.thresholds[i].toFixed(3), pct(p.share[t])])) +
    table(["requests", "degraded", "cost / 1k", "all-big cost / 1k", "cost vs all-big"],
      [[p.requests, p.degraded + (p.degraded ? ` (${esc(Object.entries(p.degraded_by_reason).map(([k, n]) => `${k} ${n}`).join(", "))})` : ""), money(p.cost_per_1k), money(p.all_big_cost_per_1k), pct(p.cost_vs_all_big)]]) +
    (p.shadow.length ? table(["hour", "shadow agreement", "calls"], p.shadow.map((s) =>
      [esc(s.time.slice(0, 16).replace("T", " ")), pct(s.agreement), s.n])) : "<p>No shadow calls yet (route.shadow_rate).</p>") +
    (p.flywheel.length ? table(["flywheel round", "time", "new rows", "rows", "retrained", "thresholds"], p.flywheel.map((r) =>
      [r.round, esc(r.time), r.new_rows, r.rows, esc(r.retrained.join(", ")), esc(JSON.stringify(r.thresholds))])) : "<p>No flywheel round yet (zimo flywheel).</p>")
  ).join("");
}

async function pageKeys() {
  const draw = async () => {
    const d = await api("/ui/api/keys");
    const box = $("#keys");
    box.removeAttribute("aria-busy");
    box.innerHTML = d.keys.length ? table(["id", "name", "models", "rate/min", "big-tier spend", "admin", "created", "state", ""],
      d.keys.map((k) => [`<code>${esc(k.id)}</code>`, esc(k.name), esc(k.models ? k.models.join(", ") : "all"), k.rate_per_minute ?? "—",
        k.big_budget_usd == null ? "no budget" : esc(`${k.big_spent_usd.toFixed(4)} / ${k.big_budget_usd} USD ${k.budget_period === "total" ? "in total" : "this " + k.budget_period}`),
        k.admin ? "yes" : "no", esc((k.created_at || "").slice(0, 19)), k.revoked_at ? "revoked" : "active",
        k.revoked_at ? "" : `<button class="danger revoke" data-id="${esc(k.id)}" aria-label="Revoke key ${esc(k.name)}">Revoke</button>`]))
      : "<p>No keys yet.</p>";
    box.querySelectorAll("button.revoke").forEach((b) =>
      b.addEventListener("click", async () => {
        await api(`/ui/api/keys/${encodeURIComponent(b.dataset.id)}`, { method: "DELETE" });
        notice(`key ${b.dataset.id} revoked`);
        draw();
      }));
  };
  $("#key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const models = $("#key-models").value.split(",").map((s) => s.trim()).filter(Boolean);
    const body = { name: $("#key-name").value, models: models.length ? models : null,
      rate_per_minute: Number($("#key-rate").value) || null, admin: $("#key-admin").checked };
    if ($("#key-budget").value !== "") {
      body.big_budget_usd = Number($("#key-budget").value);
      body.budget_period = $("#key-period").value;
    }
    const d = await api("/ui/api/keys", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("#new-key").innerHTML = `New key (shown once): <code data-testid="new-key">${esc(d.key)}</code>`;
    draw();
  });
  await draw();
}

const PAGES = { projects: pageProjects, datasets: pageDatasets, runs: pageRuns, models: pageModels, gateway: pageGateway, keys: pageKeys };

// A 401/403 is already explained in the notice; don't report it again as an error.
window.addEventListener("unhandledrejection", (e) => {
  if (e.reason && e.reason.message === "auth") e.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  const login = $("#login");
  if (login) {
    $("#admin-key").value = localStorage.getItem("zimo-admin-key") || "";
    login.addEventListener("submit", (e) => {
      e.preventDefault();
      localStorage.setItem("zimo-admin-key", $("#admin-key").value.trim());
      location.reload();
    });
  }
  const fn = PAGES[document.body.dataset.page];
  if (fn) fn().catch((e) => console.warn(e));
});
