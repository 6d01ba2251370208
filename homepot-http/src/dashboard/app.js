// homepot's dashboard: one page, no build step. It signs in with an API key for a session
// cookie, then reads the same API as every other client; writes carry the CSRF token.
"use strict";

const state = { role: null, csrf: null, timer: null, source: null, socket: null };
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
/// Axis labels: large figures with an SI suffix, so a byte count fits beside the chart.
function short(v) {
  const a = Math.abs(v);
  for (const [limit, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e4, "k"]]) if (a >= limit) return (v / limit).toFixed(1) + suffix;
  return num(v);
}

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
  if (state.socket) state.socket.close();
  state.timer = state.source = state.socket = null;
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
  const pages = {
    fleet: fleetPage, device: devicePage, alerts: alertsPage, nodes: nodesPage,
    containers: containersPage, metrics: explorerPage, service: servicePage,
  };
  (pages[page] || fleetPage)(decodeURIComponent(arg || ""));
}
window.addEventListener("hashchange", route);

const DAY_S = 86400;
const SPARK_FIELDS = ["cpu_percent", "memory_percent", "disk_percent"];

/// One figure with its 24-hour sparkline; the number keeps the cell readable without colour.
function figureCell(device, field, value) {
  return el("td", { class: "num" }, sparkline(device, field), " ", num(value));
}

/// Hourly averages of the last 24 hours for the devices on screen: one query per field for
/// the whole page. Re-read at most once a minute, since an hourly bucket moves slowly.
async function sparklines(ids, cache) {
  const key = ids.join(",");
  if (cache.key === key && Date.now() - cache.at < 60000) return cache.series;
  const to = Math.floor(Date.now() / 1000), from = to - DAY_S;
  const series = {};
  await Promise.all(SPARK_FIELDS.map(async (field) => {
    const p = new URLSearchParams({ field, from: String(from), to: String(to), step: "3600", agg: "avg" });
    for (const id of ids) p.append("device_id", id);
    let answer = { series: [] };
    try { answer = await api("GET", "/api/v1/query/range?" + p); } catch (_) { /* none of them reported the field */ }
    for (const s of answer.series) series[s.labels.device_id + "/" + field] = s.points;
  }));
  Object.assign(cache, { key, at: Date.now(), series, from, to });
  return series;
}

const SVG = "http://www.w3.org/2000/svg";

/// A sparkline as an SVG polyline: three hundred of them cost a fraction of what as many
/// canvases do (each canvas needs its own backing store and context).
function drawSparkline(svg, points, from, to) {
  svg.dataset.points = String(points.length);
  const line = svg.firstChild;
  if (!points.length) { line.setAttribute("points", ""); return; }
  const w = 60, h = 18;
  const x = (t) => (((t - from) / (to - from)) * (w - 2) + 1).toFixed(1);
  // Percentages: a fixed 0–100 scale, so sparklines compare across rows.
  const y = (v) => (h - 1 - (Math.min(100, Math.max(0, v)) / 100) * (h - 2)).toFixed(1);
  const coords = points.map((p) => x(p[0]) + "," + y(p[1]));
  // A single point still shows, as a short dash.
  if (points.length === 1) coords.push((Number(x(points[0][0])) + 2).toFixed(1) + "," + y(points[0][1]));
  line.setAttribute("points", coords.join(" "));
}

function sparkline(device, field) {
  const svg = document.createElementNS(SVG, "svg");
  for (const [k, v] of Object.entries({ class: "spark", viewBox: "0 0 60 18", "data-device": device, "data-field": field, "aria-hidden": "true" })) svg.setAttribute(k, v);
  svg.append(document.createElementNS(SVG, "polyline"));
  return svg;
}

function fleetPage() {
  const search = el("input", { type: "search", placeholder: "Search id or name", id: "fleet-search", "aria-label": "Search devices" });
  const filter = el("select", { id: "fleet-state", "aria-label": "State" }, ...["", "online", "unhealthy", "offline"].map((s) => el("option", { value: s }, s || "any state")));
  const health = el("select", { id: "fleet-health", "aria-label": "Health" }, ...[["", "any health"], ["true", "healthy"], ["false", "unhealthy"]].map(([v, t]) => el("option", { value: v }, t)));
  const sort = el("select", { id: "fleet-sort", "aria-label": "Sort" },
    ...[["device_id", "id"], ["-cpu_percent", "CPU, highest"], ["-memory_percent", "memory, highest"], ["-disk_percent", "disk, highest"], ["-last_seen", "last seen"]]
      .map(([v, t]) => el("option", { value: v }, t)));
  const body = el("tbody", { id: "fleet-rows" });
  const more = el("button", { hidden: "" }, "More");
  const count = el("span", { class: "muted", id: "fleet-count" });
  const cache = {};
  let cursor = null, shown = [];
  const query = () => {
    const p = new URLSearchParams({ limit: "100", sort: sort.value });
    if (search.value) p.set("q", search.value);
    if (filter.value) p.set("state", filter.value);
    if (health.value) p.set("healthy", health.value);
    return p;
  };
  const row = (d) => el("tr", { "data-device": d.device_id },
    el("td", {}, el("span", { class: "dot " + (d.state || ""), title: d.state || "no check yet" })),
    el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(d.device_id) }, d.device_id)),
    el("td", {}, d.name || ""),
    el("td", {}, d.state || "–"),
    el("td", {}, d.latest ? ago(d.latest.checked_at) : "never"),
    el("td", {}, d.latest ? (d.latest.is_healthy ? "healthy" : "unhealthy") : "–"),
    ...SPARK_FIELDS.map((f) => figureCell(d.device_id, f, d.latest && d.latest[f])));
  const paint = async () => {
    const series = await sparklines(shown, cache);
    for (const svg of body.querySelectorAll("svg.spark")) {
      drawSparkline(svg, series[svg.dataset.device + "/" + svg.dataset.field] || [], cache.from, cache.to);
    }
  };
  const load = async (append) => {
    const p = query();
    if (append && cursor) p.set("cursor", cursor);
    const page = await api("GET", "/api/v1/devices?" + p);
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    const rows = page.devices.map(row);
    if (append) body.append(...rows); else body.replaceChildren(...rows);
    shown = [...body.querySelectorAll("tr[data-device]")].map((r) => r.dataset.device);
    count.textContent = shown.length + (cursor ? "+" : "") + " devices";
    await paint();
  };
  more.addEventListener("click", () => load(true));
  // `change` for the selects: every browser fires it when a choice is made.
  search.addEventListener("input", () => load(false));
  for (const control of [filter, health, sort]) control.addEventListener("change", () => load(false));
  $("#page").replaceChildren(
    el("h1", {}, "Fleet"),
    el("div", { class: "bar" }, search, filter, health, sort, count),
    el("div", { class: "scroll" }, el("table", { id: "fleet" }, el("thead", {}, el("tr", {}, ...["", "device", "name", "state", "last seen", "health", "CPU % (24 h)", "memory % (24 h)", "disk % (24 h)"].map((h) => el("th", {}, h)))), body)),
    more);
  live(() => load(false).catch(() => {}), 5000);
}

const RANGES = [["3600", "1 h"], ["86400", "24 h"], ["604800", "7 d"], ["2592000", "30 d"]];
const DEVICE_CHARTS = {
  system: [["cpu_percent", "CPU %"], ["memory_percent", "memory %"], ["disk_percent", "disk %"], ["response_time_ms", "response time, ms"]],
  network: [["latency_ms", "network latency, ms"], ["rx_bytes", "received, bytes"], ["tx_bytes", "sent, bytes"]],
  app_metrics: [["transactions_count", "transactions"], ["errors_count", "app errors"], ["warnings_count", "app warnings"], ["avg_response_time_ms", "app response time, ms"]],
};

function rangeSelect(id, initial) {
  const range = el("select", { id, "aria-label": "Range" }, ...RANGES.map(([v, t]) => el("option", { value: v }, t)));
  range.value = initial;
  return range;
}

async function devicePage(id) {
  stopLive();
  const page = $("#page");
  const device = await api("GET", "/api/v1/devices/" + encodeURIComponent(id));
  const range = rangeSelect("range", "86400");
  const latest = device.latest_health;
  const data = (latest && latest.response_data) || {};
  // Network and app charts only for devices that send those groups.
  const fields = [...DEVICE_CHARTS.system, ...(data.network ? DEVICE_CHARTS.network : []), ...(data.app_metrics ? DEVICE_CHARTS.app_metrics : [])];
  const charts = el("div", { class: "charts" });
  const draw = async () => {
    const to = Math.floor(Date.now() / 1000), from = to - Number(range.value);
    charts.replaceChildren(...await Promise.all(fields.map(([field, title]) =>
      chartCard(new URLSearchParams({ device_id: id, field }), field, title, from, to))));
  };
  range.addEventListener("change", draw);
  const alerts = await api("GET", "/api/v1/alerts?limit=20&device_id=" + encodeURIComponent(id));
  let history = { history: [] };
  try { history = await api("GET", "/api/v1/metrics/device-state-history/" + encodeURIComponent(id) + "?hours=720&limit=20"); } catch (_) { /* analytics may be off */ }
  page.replaceChildren(
    el("h1", {}, el("span", { class: "dot " + (device.state || "") }), " ", device.device_id, device.name ? " — " + device.name : ""),
    el("div", { class: "cards" },
      el("div", { class: "card" }, "state", el("b", {}, device.state || "–")),
      el("div", { class: "card" }, "since", el("b", {}, device.state_since ? ago(device.state_since) : "–")),
      el("div", { class: "card" }, "last check", el("b", {}, latest ? ago(latest.checked_at) : "never"))),
    el("div", { class: "bar" }, el("label", { class: "inline" }, "Range ", range)),
    charts,
    el("h2", {}, "Latest check"),
    el("pre", { id: "latest-check" }, latest ? JSON.stringify(latest, null, 2) : "no check yet"),
    el("h2", {}, "Alerts"),
    alertTable(alerts.alerts),
    el("h2", {}, "State timeline"),
    table(["when", "change", "reason"], history.history.map((h) => [h.timestamp, (h.previous_state || "–") + " → " + h.new_state, h.reason || ""])),
    ...(state.role === "admin" ? [await keysSection(id)] : []));
  await draw();
}

/// The device's keys, for admins: issue one, rotate one (a new key, then the old one revoked),
/// revoke one. A new secret is shown once, as the API returns it.
async function keysSection(id) {
  const holder = el("section", { id: "device-keys" });
  const path = "/api/v1/devices/" + encodeURIComponent(id) + "/keys";
  const secret = el("p", { class: "secret", role: "status" });
  const issued = (key) => secret.replaceChildren("New key ", el("code", {}, key.api_key), " (key " + key.key_id + "): copy it now, it is not shown again.");
  const render = async () => {
    const list = await api("GET", path);
    holder.replaceChildren(el("h2", {}, "Keys"), secret,
      table(["key", "issued", ""], list.keys.map((k) => [String(k.key_id), new Date(k.created_at).toLocaleString(),
        el("span", {},
          el("button", { class: "rotate", "data-key": String(k.key_id), onclick: async () => { const key = await api("POST", path); await api("DELETE", path + "/" + k.key_id); issued(key); await render(); } }, "Rotate"),
          " ",
          el("button", { class: "revoke", "data-key": String(k.key_id), onclick: async () => { if (confirm("Revoke key " + k.key_id + "? The device can no longer report with it.")) { await api("DELETE", path + "/" + k.key_id); await render(); } } }, "Revoke"))]), "key-table"),
      el("button", { id: "issue-key", onclick: async () => { issued(await api("POST", path)); await render(); } }, "Issue a key"));
  };
  await render();
  return holder;
}

/// A step of at most about 360 points that a rollup tier divides: minutes up to a day, whole
/// hours beyond, so a month reads 720 hour buckets instead of 43,200 minute ones.
function stepFor(span) {
  const step = Math.ceil(span / 360);
  return step <= 300 ? Math.ceil(step / 60) * 60 : Math.ceil(step / 3600) * 3600;
}

/// A chart card over `selection` (device_id and field, or name, field and tags): averages as a
/// line over the min–max band, from three range queries of one step.
async function chartCard(selection, field, title, from, to) {
  const base = new URLSearchParams(selection);
  for (const [k, v] of Object.entries({ from: String(from), to: String(to), step: String(stepFor(to - from)) })) base.set(k, v);
  const fetchAgg = (agg) => api("GET", "/api/v1/query/range?" + base + "&agg=" + agg).then((r) => (r.series[0] ? r.series[0].points : [])).catch(() => []);
  const [avg, min, max] = await Promise.all(["avg", "min", "max"].map(fetchAgg));
  const canvas = el("canvas", { "data-field": field, "data-points": String(avg.length), tabindex: "0", role: "img", "aria-label": title + ": " + avg.length + " points; arrow keys read them out" });
  const readout = el("div", { class: "readout", "aria-live": "polite" });
  const card = el("div", { class: "chart" }, el("h3", {}, title), canvas, readout);
  requestAnimationFrame(() => drawChart(canvas, readout, avg, min, max, from, to));
  return card;
}

/// A line of averages over a band from minimum to maximum, with a readout under the pointer
/// or, from the keyboard, at the point the arrow keys select.
function drawChart(canvas, readout, avg, min, max, from, to) {
  const started = performance.now();
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 320, h = canvas.clientHeight || 160;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.fillStyle = "#fff"; g.fillRect(0, 0, w, h);
  if (!avg.length) { g.fillStyle = "#656d76"; g.fillText("no data in this range", 10, h / 2); return; }
  const values = [...avg, ...min, ...max].map((p) => p[1]);
  let lo = values[0], hi = values[0];
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => 30 + ((t - from) / (to - from)) * (w - 40);
  const y = (v) => h - 15 - ((v - lo) / (hi - lo)) * (h - 25);
  const lows = new Map(min.map((p) => [p[0], p[1]]));
  const highs = new Map(max.map((p) => [p[0], p[1]]));
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
  g.fillText(short(hi), 2, 12); g.fillText(short(lo), 2, h - 15);
  canvas.dataset.drawMs = (performance.now() - started).toFixed(2);
  const show = (i) => {
    const p = avg[i];
    readout.textContent = new Date(p[0] * 1000).toLocaleString() + ": " + num(p[1], 2) +
      (lows.has(p[0]) && highs.has(p[0]) ? " (min " + num(lows.get(p[0]), 2) + ", max " + num(highs.get(p[0]), 2) + ")" : "");
    canvas.dataset.cursor = String(i);
  };
  canvas.onmousemove = (event) => {
    const t = from + ((event.offsetX - 30) / (w - 40)) * (to - from);
    let best = 0;
    avg.forEach((p, i) => { if (Math.abs(p[0] - t) < Math.abs(avg[best][0] - t)) best = i; });
    show(best);
  };
  canvas.onkeydown = (event) => {
    const step = { ArrowLeft: -1, ArrowRight: 1, Home: -avg.length, End: avg.length }[event.key];
    if (step === undefined) return;
    event.preventDefault();
    const at = canvas.dataset.cursor === undefined ? (step > 0 ? -1 : avg.length) : Number(canvas.dataset.cursor);
    show(Math.min(avg.length - 1, Math.max(0, at + step)));
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
  const feed = el("ol", { id: "node-events", class: "feed", "aria-live": "polite" });
  const status = el("span", { id: "feed-status", class: "muted" }, "connecting…");
  const load = async () => {
    const cluster = await api("GET", "/api/monitoring/resources");
    const s = cluster.summary;
    cards.replaceChildren(...[["nodes", s.total_nodes], ["avg CPU %", num(s.avg_cpu_usage_percent)], ["avg memory %", num(s.avg_memory_usage_percent)],
      ["avg flash %", num(s.avg_flash_usage_percent)], ["sent", bytes(s.total_bytes_sent)], ["received", bytes(s.total_bytes_received)], ["stale", s.stale_nodes]]
      .map(([t, v]) => el("div", { class: "card" }, t, el("b", {}, v))));
    body.replaceChildren(...cluster.nodes.map((n) => el("tr", { "data-node": n.node_id },
      el("td", {}, el("span", { class: "dot " + (n.stale ? "offline" : "online") }), n.stale ? " stale" : " live"),
      el("td", {}, n.node_id), el("td", {}, Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v).join(", ")),
      el("td", { class: "num" }, num(n.cpu.usage_percent)), el("td", { class: "num" }, num(n.memory.usage_percent)),
      el("td", { class: "num" }, n.flash ? num(n.flash.usage_percent) : "–"), el("td", {}, ago(n.last_seen)))));
  };
  $("#page").replaceChildren(el("h1", {}, "Gateway nodes"), cards,
    el("div", { class: "scroll" }, el("table", { id: "nodes" }, el("thead", {}, el("tr", {}, ...["", "node", "labels", "CPU %", "memory %", "flash %", "last seen"].map((h) => el("th", {}, h)))), body)),
    el("h2", {}, "Live events ", status), feed);
  live(() => load().catch(() => {}), 5000);
  // The cluster's events over the WebSocket; the session cookie authenticates it.
  const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  state.socket = socket;
  socket.onopen = () => { status.textContent = "connected"; };
  socket.onclose = () => { status.textContent = "disconnected"; };
  socket.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch (_) { return; }
    feed.prepend(el("li", { "data-type": event.type }, el("time", {}, new Date().toLocaleTimeString()), " ", describe(event)));
    while (feed.children.length > 50) feed.lastChild.remove();
    if (event.type && !event.type.startsWith("alert_")) load().catch(() => {});
  };
}

/// One line for a `/ws` event, in words.
function describe(e) {
  const labels = (l) => Object.entries(l || {}).map(([k, v]) => k + "=" + v).join(", ");
  switch (e.type) {
    case "node_joined": return e.node_id + " joined" + (e.labels && Object.keys(e.labels).length ? " (" + labels(e.labels) + ")" : "");
    case "node_stale": return e.node_id + " went stale";
    case "labels_changed": return e.node_id + " labels: " + labels(e.previous) + " → " + labels(e.labels);
    case "threshold_crossed": return e.node_id + " " + e.metric + " " + num(e.value) + " crossed " + num(e.threshold);
    case "threshold_cleared": return e.node_id + " " + e.metric + " back to " + num(e.value);
    case "lagged": return e.missed + " events missed";
    default: return e.type && e.alert ? e.type.replace("alert_", "alert ") + ": " + e.alert.rule_id + " on " + e.alert.subject : JSON.stringify(e);
  }
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0, v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return v.toFixed(i ? 1 : 0) + " " + units[i];
}

/// Container measurements (edge devices): the latest snapshot per originator, and a chart of
/// any measurement of any originator from the rollups of the `container` metric.
function containersPage() {
  const holder = el("div", { id: "container-snapshots" });
  const charts = el("div", { class: "charts", id: "container-charts" });
  const range = rangeSelect("container-range", "86400");
  let chosen = null;
  const chart = async () => {
    if (!chosen) return;
    const to = Math.floor(Date.now() / 1000), from = to - Number(range.value);
    const selection = new URLSearchParams({ name: "container", field: chosen.id });
    selection.append("tag", "originator:" + chosen.originator);
    if (chosen.device) selection.append("tag", "device_id:" + chosen.device);
    charts.replaceChildren(await chartCard(selection, chosen.id, chosen.id + " — " + chosen.originator + (chosen.device ? " on " + chosen.device : ""), from, to));
  };
  range.addEventListener("change", chart);
  const load = async () => {
    const answer = await api("GET", "/api/v1/containers/metrics");
    if (!answer.snapshots.length) { holder.replaceChildren(el("p", { class: "muted" }, "No container measurements yet.")); return; }
    holder.replaceChildren(...answer.snapshots.map((snap) => el("div", { class: "chart", "data-originator": snap.originator },
      el("h3", {}, snap.originator, snap.device_id ? " on " + snap.device_id : "", " · ", ago(new Date(snap.timestamp).toISOString())),
      table(["measurement", "value", ""], snap.measurements.map((m) => [m.id, Number(num(m.value, 2)),
        el("button", { class: "plot", onclick: () => { chosen = { id: m.id, originator: snap.originator, device: snap.device_id }; chart(); } }, "Chart")])))));
    if (!chosen && answer.snapshots[0].measurements.length) {
      const snap = answer.snapshots[0];
      chosen = { id: snap.measurements[0].id, originator: snap.originator, device: snap.device_id };
      await chart();
    }
  };
  $("#page").replaceChildren(el("h1", {}, "Containers"), el("div", { class: "bar" }, el("label", { class: "inline" }, "Range ", range)), charts,
    el("h2", {}, "Latest per originator"), el("div", { class: "snapshots" }, holder));
  live(() => load().catch((error) => holder.replaceChildren(el("p", { class: "error" }, error.message))), 10000);
}

/// Any metric: pick a name, a field and tag filters from the live series, and chart every
/// matching series from the rollups.
async function explorerPage() {
  stopLive();
  const names = (await api("GET", "/api/v1/metrics/names")).names;
  const name = el("select", { id: "explore-name", "aria-label": "Metric" }, ...names.map((n) => el("option", { value: n }, n)));
  const field = el("select", { id: "explore-field", "aria-label": "Field" });
  const tags = el("div", { class: "bar", id: "explore-tags" });
  const range = rangeSelect("explore-range", "86400");
  const charts = el("div", { class: "charts", id: "explore-charts" });
  const chartAll = async () => {
    if (!name.value || !field.value) { charts.replaceChildren(); return; }
    const to = Math.floor(Date.now() / 1000), from = to - Number(range.value);
    const selection = new URLSearchParams({ name: name.value, field: field.value });
    for (const select of tags.querySelectorAll("select")) if (select.value) selection.append("tag", select.dataset.tag + ":" + select.value);
    // One card per series (up to twelve), each from its own exact tag set.
    let answer;
    try { answer = await api("GET", "/api/v1/query/range?" + selection + "&from=" + from + "&to=" + to + "&max_points=1"); } catch (error) {
      charts.replaceChildren(el("p", { class: "error" }, error.message)); return;
    }
    const series = answer.series.slice(0, 12);
    const cards = await Promise.all(series.map((s) => {
      const exact = new URLSearchParams({ name: name.value, field: field.value });
      const label = [];
      for (const [k, v] of Object.entries(s.labels)) if (!k.startsWith("__")) { exact.append("tag", k + ":" + v); label.push(k + "=" + v); }
      return chartCard(exact, field.value, name.value + "." + field.value + (label.length ? " {" + label.join(", ") + "}" : ""), from, to);
    }));
    if (answer.series.length > 12) cards.push(el("p", { class: "muted" }, answer.series.length + " series match; narrow with tags to see the rest."));
    charts.replaceChildren(...cards);
  };
  const pick = async () => {
    const live = await api("GET", "/api/v1/metrics?name=" + encodeURIComponent(name.value));
    const fields = new Set(), values = {};
    for (const m of Object.values(live.metrics)) {
      for (const [f, v] of Object.entries(m.fields)) if (typeof v === "number" || typeof v === "boolean") fields.add(f);
      for (const [k, v] of Object.entries(m.tags)) (values[k] = values[k] || new Set()).add(v);
    }
    field.replaceChildren(...[...fields].sort().map((f) => el("option", { value: f }, f)));
    tags.replaceChildren(...Object.keys(values).sort().map((k) => el("label", { class: "inline" }, k + " ",
      el("select", { "data-tag": k, onchange: chartAll }, el("option", { value: "" }, "any"), ...[...values[k]].sort().map((v) => el("option", { value: v }, v))))));
    await chartAll();
  };
  name.addEventListener("change", pick);
  for (const control of [field, range]) control.addEventListener("change", chartAll);
  $("#page").replaceChildren(el("h1", {}, "Metrics explorer"),
    names.length ? el("div", { class: "bar" }, el("label", { class: "inline" }, "Metric ", name), el("label", { class: "inline" }, "Field ", field), el("label", { class: "inline" }, "Range ", range)) : el("p", { class: "muted" }, "No live metrics yet."),
    tags, charts);
  if (names.length) await pick();
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
