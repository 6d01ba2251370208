// homepot's dashboard: one page, no build step. It signs in with an API key for a session
// cookie, then reads the same API as every other client; writes carry the CSRF token.
"use strict";

const state = { role: null, csrf: null, timer: null, source: null };
const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && path !== "/api/v1/session") { showLogin(); throw new Error("signed out"); }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail))) || response.status);
  return data;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
const num = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

// ---- sign-in ----

function showLogin() {
  stopLive();
  state.role = state.csrf = null;
  $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  $("#page").replaceChildren();
  $("#login").hidden = false;
}

async function start() {
  try {
    const me = await api("GET", "/api/v1/session");
    signedIn(me);
  } catch (_) { showLogin(); }
}

function signedIn(me) {
  state.role = me.role; state.csrf = me.csrf_token;
  $("#login").hidden = true; $("#nav").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = me.role === "admin" ? "admin" : "read-only";
  route();
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  try {
    const me = await api("POST", "/api/v1/session", { api_key: $("#key").value });
    $("#key").value = "";
    signedIn(me);
  } catch (error) { $("#login-error").textContent = error.message; }
});

$("#logout").addEventListener("click", async () => {
  try { await api("DELETE", "/api/v1/session"); } finally { showLogin(); }
});

// ---- pages ----

function stopLive() {
  if (state.timer) clearInterval(state.timer);
  if (state.source) state.source.close();
  state.timer = state.source = null;
}

/// Calls `refresh` now, every `ms`, and whenever an alert changes.
function live(refresh, ms) {
  stopLive();
  refresh();
  state.timer = setInterval(refresh, ms);
  state.source = new EventSource("/metrics/stream");
  state.source.addEventListener("alert", () => refresh());
}

function route() {
  if (!state.role) return;
  const [, page = "fleet", arg] = location.hash.split("/");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  const pages = { fleet: fleetPage, device: devicePage, alerts: alertsPage, nodes: nodesPage, service: servicePage };
  (pages[page] || fleetPage)(decodeURIComponent(arg || ""));
}
window.addEventListener("hashchange", route);

function fleetPage() {
  const search = el("input", { type: "search", placeholder: "Search id or name", id: "fleet-search" });
  const filter = el("select", { id: "fleet-state" }, ...["", "online", "unhealthy", "offline"].map((s) => el("option", { value: s }, s || "any state")));
  const sort = el("select", { id: "fleet-sort" },
    ...[["device_id", "id"], ["-cpu_percent", "CPU, highest"], ["-memory_percent", "memory, highest"], ["-disk_percent", "disk, highest"], ["-last_seen", "last seen"]]
      .map(([v, t]) => el("option", { value: v }, t)));
  const body = el("tbody", { id: "fleet-rows" });
  const more = el("button", { hidden: "" }, "More");
  let cursor = null;
  const query = () => {
    const p = new URLSearchParams({ limit: "100", sort: sort.value });
    if (search.value) p.set("q", search.value);
    if (filter.value) p.set("state", filter.value);
    return p;
  };
  const row = (d) => el("tr", { "data-device": d.device_id },
    el("td", {}, el("span", { class: "dot " + (d.state || ""), title: d.state || "no check yet" })),
    el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(d.device_id) }, d.device_id)),
    el("td", {}, d.name || ""),
    el("td", {}, d.state || "–"),
    el("td", {}, d.latest ? ago(d.latest.checked_at) : "never"),
    el("td", {}, d.latest ? (d.latest.is_healthy ? "healthy" : "unhealthy") : "–"),
    el("td", { class: "num" }, num(d.latest && d.latest.cpu_percent)),
    el("td", { class: "num" }, num(d.latest && d.latest.memory_percent)),
    el("td", { class: "num" }, num(d.latest && d.latest.disk_percent)));
  const load = async (append) => {
    const p = query();
    if (append && cursor) p.set("cursor", cursor);
    const page = await api("GET", "/api/v1/devices?" + p);
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    const rows = page.devices.map(row);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
  };
  more.addEventListener("click", () => load(true));
  // `change` for the selects: every browser fires it when a choice is made.
  search.addEventListener("input", () => load(false));
  for (const control of [filter, sort]) control.addEventListener("change", () => load(false));
  $("#page").replaceChildren(
    el("h1", {}, "Fleet"),
    el("div", { class: "bar" }, search, filter, sort),
    el("table", {}, el("thead", {}, el("tr", {}, ...["", "device", "name", "state", "last seen", "health", "CPU %", "memory %", "disk %"].map((h) => el("th", {}, h)))), body),
    more);
  live(() => load(false).catch(() => {}), 5000);
}

async function devicePage(id) {
  stopLive();
  const page = $("#page");
  const device = await api("GET", "/api/v1/devices/" + encodeURIComponent(id));
  const range = el("select", { id: "range" }, ...[["3600", "1 h"], ["86400", "24 h"], ["604800", "7 d"], ["2592000", "30 d"]].map(([v, t]) => el("option", { value: v }, t)));
  range.value = "86400";
  const charts = el("div", { class: "charts" });
  const fields = [["cpu_percent", "CPU %"], ["memory_percent", "memory %"], ["disk_percent", "disk %"], ["response_time_ms", "response time, ms"]];
  const draw = async () => {
    const to = Math.floor(Date.now() / 1000), from = to - Number(range.value);
    charts.replaceChildren(...await Promise.all(fields.map(([field, title]) => chartCard(id, field, title, from, to))));
  };
  range.addEventListener("change", draw);
  const latest = device.latest_health;
  const alerts = await api("GET", "/api/v1/alerts?limit=20&device_id=" + encodeURIComponent(id));
  let history = { history: [] };
  try { history = await api("GET", "/api/v1/metrics/device-state-history/" + encodeURIComponent(id) + "?hours=720&limit=20"); } catch (_) { /* analytics may be off */ }
  page.replaceChildren(
    el("h1", {}, el("span", { class: "dot " + (device.state || "") }), " ", device.device_id, device.name ? " — " + device.name : ""),
    el("div", { class: "cards" },
      el("div", { class: "card" }, "state", el("b", {}, device.state || "–")),
      el("div", { class: "card" }, "since", el("b", {}, device.state_since ? ago(device.state_since) : "–")),
      el("div", { class: "card" }, "last check", el("b", {}, latest ? ago(latest.timestamp || latest.checked_at) : "never"))),
    el("div", { class: "bar" }, "Range ", range),
    charts,
    el("h2", {}, "Latest check"),
    el("pre", {}, latest ? JSON.stringify(latest, null, 2) : "no check yet"),
    el("h2", {}, "Alerts"),
    alertTable(alerts.alerts),
    el("h2", {}, "State timeline"),
    el("table", {}, el("tbody", {}, ...history.history.map((h) => el("tr", {}, el("td", {}, h.timestamp), el("td", {}, h.previous_state || "–", " → ", h.new_state), el("td", {}, h.reason || ""))))));
  await draw();
}

async function chartCard(device, field, title, from, to) {
  const base = new URLSearchParams({ device_id: device, field, from: String(from), to: String(to), max_points: "300" });
  const fetchAgg = (agg) => api("GET", "/api/v1/query/range?" + base + "&agg=" + agg).then((r) => (r.series[0] ? r.series[0].points : [])).catch(() => []);
  const [avg, min, max] = await Promise.all(["avg", "min", "max"].map(fetchAgg));
  const canvas = el("canvas", { "data-field": field, "data-points": String(avg.length) });
  const readout = el("div", { class: "readout" });
  const card = el("div", { class: "chart" }, el("h3", {}, title), canvas, readout);
  requestAnimationFrame(() => drawChart(canvas, readout, avg, min, max, from, to));
  return card;
}

/// A line of averages over a band from minimum to maximum, with a readout under the pointer.
function drawChart(canvas, readout, avg, min, max, from, to) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 320, h = canvas.clientHeight || 160;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.fillStyle = "#fff"; g.fillRect(0, 0, w, h);
  if (!avg.length) { g.fillStyle = "#656d76"; g.fillText("no data in this range", 10, h / 2); return; }
  const values = [...avg, ...min, ...max].map((p) => p[1]);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => 30 + ((t - from) / (to - from)) * (w - 40);
  const y = (v) => h - 15 - ((v - lo) / (hi - lo)) * (h - 25);
  const lows = new Map(min.map((p) => [p[0], p[1]]));
  g.fillStyle = "rgba(9,105,218,.15)";
  g.beginPath();
  max.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  [...max].reverse().forEach((p) => g.lineTo(x(p[0]), y(lows.has(p[0]) ? lows.get(p[0]) : p[1])));
  g.fill();
  g.strokeStyle = "#0969da"; g.lineWidth = 1.5;
  g.beginPath();
  avg.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
  if (avg.length < 3) {
    g.fillStyle = "#0969da";
    for (const p of avg) { g.beginPath(); g.arc(x(p[0]), y(p[1]), 3, 0, 2 * Math.PI); g.fill(); }
  }
  g.fillStyle = "#656d76"; g.font = "10px system-ui";
  g.fillText(num(hi), 2, 12); g.fillText(num(lo), 2, h - 15);
  canvas.onmousemove = (event) => {
    const t = from + ((event.offsetX - 30) / (w - 40)) * (to - from);
    let best = avg[0];
    for (const p of avg) if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
    readout.textContent = new Date(best[0] * 1000).toLocaleString() + ": " + num(best[1], 2);
  };
}

function alertTable(alerts) {
  const admin = state.role === "admin";
  return el("table", { class: "alerts" },
    el("thead", {}, el("tr", {}, ...["state", "severity", "rule", "subject", "summary", "since", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...alerts.map((a) => el("tr", { "data-alert": a.id },
      el("td", {}, a.state + (a.ack ? " (acknowledged by " + a.ack.by + ")" : "")),
      el("td", { class: "sev-" + a.severity }, a.severity),
      el("td", {}, a.rule_id),
      el("td", {}, a.device_id ? el("a", { href: "#/device/" + encodeURIComponent(a.device_id) }, a.subject) : a.subject),
      el("td", {}, a.summary),
      el("td", {}, ago(a.started_at)),
      el("td", {}, admin && a.state !== "resolved" && !a.ack ? el("button", { class: "ack", onclick: () => ack(a) }, "Acknowledge") : null,
        admin && a.state !== "resolved" ? el("button", { class: "silence", onclick: () => silence(a) }, "Silence 1 h") : null)))));
}

async function ack(alert) {
  const note = prompt("Acknowledge " + alert.subject + ": what is being done?");
  if (note === null) return;
  await api("POST", "/api/v1/alerts/" + alert.id + "/ack", { by: "dashboard", note: note || null });
  route();
}

async function silence(alert) {
  const ends = new Date(Date.now() + 3600 * 1000).toISOString();
  await api("POST", "/api/v1/alerts/silences", { matchers: ["alertname=" + alert.rule_id, "subject=" + alert.subject], ends_at: ends, created_by: "dashboard" });
  route();
}

function alertsPage() {
  const filter = el("select", { id: "alert-state" }, ...[["", "open and resolved"], ["firing", "firing"], ["pending", "pending"], ["resolved", "resolved"]].map(([v, t]) => el("option", { value: v }, t)));
  const holder = el("div");
  const silences = el("div");
  const load = async () => {
    const p = new URLSearchParams({ limit: "200" });
    if (filter.value) p.set("state", filter.value);
    const list = await api("GET", "/api/v1/alerts?" + p);
    holder.replaceChildren(alertTable(list.alerts));
    const active = (await api("GET", "/api/v1/alerts/silences")).items.filter((s) => Date.parse(s.ends_at) > Date.now());
    silences.replaceChildren(el("table", {}, el("tbody", {}, ...active.map((s) => el("tr", {},
      el("td", {}, s.matchers.map((m) => m.name + (m.negate ? "!=" : "=") + m.value).join(", ")),
      el("td", {}, "until " + new Date(s.ends_at).toLocaleString()),
      el("td", {}, s.comment || ""))))));
  };
  filter.addEventListener("change", load);
  $("#page").replaceChildren(el("h1", {}, "Alerts"), el("div", { class: "bar" }, filter), holder, el("h2", {}, "Silences in force"), silences);
  live(() => load().catch(() => {}), 10000);
}

function nodesPage() {
  const cards = el("div", { class: "cards" });
  const body = el("tbody");
  const load = async () => {
    const cluster = await api("GET", "/api/monitoring/resources");
    const s = cluster.summary;
    cards.replaceChildren(...[["nodes", s.total_nodes], ["avg CPU %", num(s.avg_cpu_usage_percent)], ["avg memory %", num(s.avg_memory_usage_percent)], ["stale", s.stale_nodes]]
      .map(([t, v]) => el("div", { class: "card" }, t, el("b", {}, v))));
    body.replaceChildren(...cluster.nodes.map((n) => el("tr", {},
      el("td", {}, el("span", { class: "dot " + (n.stale ? "offline" : "online") })),
      el("td", {}, n.node_id), el("td", {}, Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v).join(", ")),
      el("td", { class: "num" }, num(n.cpu.usage_percent)), el("td", { class: "num" }, num(n.memory.usage_percent)),
      el("td", { class: "num" }, n.flash ? num(n.flash.usage_percent) : "–"), el("td", {}, ago(n.last_seen)))));
  };
  $("#page").replaceChildren(el("h1", {}, "Gateway nodes"), cards,
    el("table", {}, el("thead", {}, el("tr", {}, ...["", "node", "labels", "CPU %", "memory %", "flash %", "last seen"].map((h) => el("th", {}, h)))), body));
  live(() => load().catch(() => {}), 5000);
}

function table(headers, rows, id) {
  return el("table", id ? { id } : {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", typeof c === "number" ? { class: "num" } : {}, c))))));
}

/// The service itself over a window: API latency per route, job success rates, error trends.
function servicePage() {
  const hours = el("select", { id: "service-hours" }, ...[["1", "1 h"], ["24", "24 h"], ["168", "7 d"]].map(([v, t]) => el("option", { value: v }, t)));
  hours.value = "24";
  const holder = el("div");
  const load = async () => {
    const h = hours.value;
    const [perf, jobs, errors] = await Promise.all([
      api("GET", "/api/v1/metrics/api-performance?hours=" + h),
      api("GET", "/api/v1/metrics/job-outcomes?hours=" + h),
      api("GET", "/api/v1/metrics/error-trends?hours=" + h),
    ]);
    holder.replaceChildren(
      el("h2", {}, "API latency per route"),
      table(["method", "route", "requests", "p95 ms", "avg ms", "errors %"], perf.metrics.map((m) =>
        [m.method, m.endpoint, m.request_count, Number(num(m.p95_response_time_ms)), Number(num(m.avg_response_time_ms)), Number(num(m.error_rate_percent))]), "service-routes"),
      el("h2", {}, "Job success rates"),
      table(["job", "runs", "succeeded", "success %"], jobs.success_rates.map((j) => [j.job_type, j.total, j.succeeded, Number(num(j.success_rate_percent))])),
      el("h2", {}, "Errors"),
      table(["category", "severity", "count"], errors.errors.map((e) => [e.category, e.severity, e.count])));
  };
  hours.addEventListener("change", load);
  $("#page").replaceChildren(el("h1", {}, "Service"), el("div", { class: "bar" }, "Window ", hours), holder);
  live(() => load().catch((error) => holder.replaceChildren(el("p", { class: "error" }, error.message))), 15000);
}

start();
