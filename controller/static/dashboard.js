// The operator's dashboard (docs/dashboard.md). Live from GET /station/stream (Server-Sent
// Events read with fetch(), which unlike EventSource can send the Authorization header), with
// a one-hour chart drawn here as SVG. A file of its own, not inline in the page: the page's
// Content-Security-Policy runs no inline script or style (docs/security-rest.md). Every value
// from the controller goes into the page as text (textContent, DOM nodes), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "ev-controller-token";
// No byte for this long (the controller sends a keep-alive every 15 s): the stream is dead.
const STALE_AFTER_MS = 45000;
const RETRY_MIN_MS = 1000, RETRY_MAX_MS = 10000;

const $ = id => document.getElementById(id);
const text = (v, digits = 1) => v === null || v === undefined ? "–" : (typeof v === "number" ? v.toFixed(digits).replace(/\.0+$/, "") : String(v));
const clock = iso => iso ? new Date(iso).toLocaleTimeString() : "–";

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function showError(message) { $("error").textContent = message; }

// -- tokens ----------------------------------------------------------------------------------
// Typed by the operator when the controller asks for one, kept for this tab only
// (sessionStorage, never a cookie) and sent in the Authorization header.

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

let afterToken = null;  // what to do once a token is typed in

function askForToken(note, then) {
  afterToken = then;
  $("login-note").textContent = note;
  $("login").hidden = false;
  $("token").focus();
}

function closeLogin() {
  $("login").hidden = true;
  $("token").value = "";
  afterToken = null;
}

$("login").addEventListener("submit", event => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  const then = afterToken;
  closeLogin();
  if (then) then();
});
$("login-cancel").addEventListener("click", () => { closeLogin(); showError(""); });

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch (e) { /* not JSON: the status says enough */ }
  return `status ${response.status}`;
}

// -- the stream ------------------------------------------------------------------------------

let retryMs = RETRY_MIN_MS;

function setLink(live, label) {
  $("link").textContent = label;
  $("link").classList.toggle("live", live);
}

function reconnectLater(message) {
  setLink(false, "reconnecting…");
  if (message) showError(message);
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
}

async function connect() {
  setLink(false, "connecting…");
  const abort = new AbortController();
  let response;
  try {
    response = await fetch("station/stream", { cache: "no-store", headers: { Accept: "text/event-stream", ...authorization() }, signal: abort.signal });
  } catch (e) {
    reconnectLater(`Cannot reach the controller: ${e.message}`);
    return;
  }
  if (response.status === 401) {
    const rejected = sessionStorage.getItem(TOKEN_KEY) !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    setLink(false, "needs a token");
    showError("");
    askForToken(rejected ? "The token was not accepted. API token:" : "This controller needs an API token:", connect);
    return;
  }
  if (!response.ok) {
    reconnectLater(`The controller refused the live stream: ${await errorMessage(response)}`);
    return;
  }
  retryMs = RETRY_MIN_MS;
  setLink(true, "live");
  showError("");
  let stale = setTimeout(() => abort.abort(), STALE_AFTER_MS);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      clearTimeout(stale);
      stale = setTimeout(() => abort.abort(), STALE_AFTER_MS);
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (e) { /* dropped or aborted: reconnect below */ }
  clearTimeout(stale);
  reconnectLater("The live stream was interrupted; reconnecting.");
}

// One event block: "event: NAME" and "data: JSON" lines; lines starting with ":" are comments.
function dispatch(block) {
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trimStart();
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (name === "history") setHistory(payload);
  else if (name === "status") { render(payload); addPoint(payload); }
}

// -- history and chart -----------------------------------------------------------------------

const chart = { interval: 5000, span: 3600000, offset: 0, points: [], battery: null };

// The controller's clock, here: its times are on its clock, which need not be this browser's.
const controllerNow = () => Date.now() + chart.offset;

function pointOf(at, p) {
  return { t: at, grid: p.gridPower, capacity: p.gridCapacity, allocated: p.allocatedPower, battery: p.batteryEnergy, site: p.sitePower };
}

function setHistory(h) {
  chart.interval = h.interval * 1000;
  chart.span = h.span * 1000;
  chart.offset = Date.parse(h.now) - Date.now();
  chart.points = h.points.map(p => pointOf(Date.parse(p.at), p));
}

// A status event adds a point; within one sampling interval of the one before, it replaces
// the newest instead, so the chart holds about one point per interval like the history.
function addPoint(s) {
  const site = s.siteMeter && s.siteMeter.state === "ok" ? s.siteMeter.lastReading : null;
  const point = pointOf(controllerNow(), { ...s, batteryEnergy: s.battery ? s.battery.storedEnergy : null, sitePower: site });
  chart.battery = s.battery;
  const n = chart.points.length;
  if (n >= 2 && point.t - chart.points[n - 2].t < chart.interval) chart.points[n - 1] = point;
  else chart.points.push(point);
  const since = controllerNow() - chart.span;
  // Keep one point before the window: the lines start at its left edge.
  while (chart.points.length > 1 && chart.points[1].t <= since) chart.points.shift();
  drawChart();
}

const BOX = { width: 960, height: 260, left: 52, right: 60, top: 22, bottom: 26 };

function niceStep(max, ticks) {
  const raw = max / ticks, power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map(m => m * power).find(step => step >= raw);
}

function svg(tag, attributes, content) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (content !== undefined) node.textContent = content;
  return node;
}

// Power holds its value until the next point (steps); energy changes steadily (straight lines).
function linePath(points, key, x, y, now, steps) {
  let d = "", last = null;
  for (const p of points) {
    if (p[key] === null || p[key] === undefined) continue;
    const px = x(p.t).toFixed(1), py = y(p[key]).toFixed(1);
    if (last === null) d = `M${px} ${py}`;
    else d += steps ? ` H${px} V${py}` : ` L${px} ${py}`;
    last = py;
  }
  return last === null ? "" : d + ` H${x(now).toFixed(1)}`;
}

function drawChart() {
  const root = $("chart");
  const now = controllerNow(), start = now - chart.span;
  const inner = { x0: BOX.left, x1: BOX.width - BOX.right, y0: BOX.height - BOX.bottom, y1: BOX.top };
  const x = t => inner.x0 + (Math.max(t, start) - start) / chart.span * (inner.x1 - inner.x0);
  const pts = chart.points;
  const powerMax = Math.max(1, ...pts.flatMap(p => [p.grid, p.capacity, p.allocated, p.site]).filter(Number.isFinite)) * 1.1;
  const powerStep = niceStep(powerMax, 4), powerTop = Math.ceil(powerMax / powerStep) * powerStep;
  const yPower = v => inner.y0 - v / powerTop * (inner.y0 - inner.y1);
  const energies = pts.map(p => p.battery).filter(Number.isFinite);
  const energyTop = chart.battery ? chart.battery.initialCapacity : Math.max(1, ...energies);
  const yEnergy = v => inner.y0 - v / Math.max(energyTop, 1e-9) * (inner.y0 - inner.y1);

  const nodes = [];
  for (let v = 0; v <= powerTop + 1e-9; v += powerStep) {
    nodes.push(svg("line", { class: "gridline", x1: inner.x0, x2: inner.x1, y1: yPower(v), y2: yPower(v) }));
    nodes.push(svg("text", { class: "left", x: inner.x0 - 6, y: yPower(v) + 4 }, text(v)));
  }
  if (energies.length) {
    for (const f of [0, 0.5, 1]) nodes.push(svg("text", { class: "right", x: inner.x1 + 6, y: yEnergy(f * energyTop) + 4 }, `${text(f * energyTop)} kWh`));
  }
  for (let minutes = 60; minutes >= 0; minutes -= 10) {
    const at = x(now - minutes * 60000);
    nodes.push(svg("line", { class: "axis", x1: at, x2: at, y1: inner.y0, y2: inner.y0 + 4 }));
    nodes.push(svg("text", { class: "below", x: at, y: inner.y0 + 17 }, minutes ? `−${minutes} min` : "now"));
  }
  nodes.push(svg("text", { class: "left", x: inner.x0 - 6, y: 11 }, "kW"));
  nodes.push(svg("line", { class: "axis", x1: inner.x0, x2: inner.x1, y1: inner.y0, y2: inner.y0 }));
  const grid = linePath(pts, "grid", x, yPower, now, true);
  const paths = [
    ["grid-area", grid && `${grid} V${inner.y0} H${x(pts[0].t).toFixed(1)} Z`],
    ["capacity", linePath(pts, "capacity", x, yPower, now, true)],
    ["allocated", linePath(pts, "allocated", x, yPower, now, true)],
    ["site", linePath(pts, "site", x, yPower, now, true)],
    ["grid", grid],
    ["battery", linePath(pts, "battery", x, yEnergy, now, false)],
  ];
  for (const [name, d] of paths) if (d) nodes.push(svg("path", { class: name, d }));
  root.replaceChildren(...nodes);
}

// -- cards and tables ------------------------------------------------------------------------

function card(title, value, fraction) {
  const div = el("div", { className: "card" }, title, el("b", { textContent: value }));
  if (fraction !== undefined) {
    const fill = el("div");
    // Through the CSSOM, which the page's Content-Security-Policy allows (a style attribute it would not).
    fill.style.width = `${Math.max(0, Math.min(100, fraction * 100))}%`;
    div.append(el("div", { className: "bar" }, fill));
  }
  return div;
}

// The grid meter at the connection point (docs/site.md): the whole site against the
// connection, what is not charging, and what that leaves for charging; marked while silent.
function siteCard(m, capacity) {
  const reading = m.lastReading === null ? "no reading" : `${text(m.lastReading)} / ${text(capacity)} kW`;
  const div = card(`Site meter (${m.state})`, reading, m.lastReading === null ? undefined : m.lastReading / capacity);
  div.id = "site-meter";
  const other = m.nonChargingLoad === null ? "" : `other loads ${text(m.nonChargingLoad)} kW, `;
  div.append(el("small", { textContent: `${other}${text(m.gridShare)} kW for charging` }));
  if (m.state !== "ok") div.classList.add("alert");
  return div;
}

function limitCard(limit) {
  const until = limit.until === null ? "until cleared" : `until ${new Date(limit.until).toLocaleString()}`;
  const div = card("External limit", `${text(limit.maxPower)} kW`);
  div.id = "external-limit";
  div.classList.add("alert");
  div.append(el("small", { textContent: `${until}; ${limit.reason || "no reason given"} (${limit.setBy})` }));
  return div;
}

function cell(row, value, className) {
  const td = row.insertCell();
  if (value instanceof Node) td.append(value); else td.textContent = value;
  if (className) td.className = className;
  return td;
}

// With the electrical model a waiting session says so (and since when); without it, 0 kW.
const paused = session => session.paused || session.allocatedPower === 0;
const allocatedText = x => x.allocatedCurrent !== null && x.allocatedCurrent !== undefined
  ? `${text(x.allocatedPower)} (${text(x.allocatedCurrent)} A × ${x.sitePhases ? x.sitePhases.length : "?"})`
  : text(x.allocatedPower);

// The current the limits in force book on each site phase, against gridCurrentLimit.
function phasesCard(phases) {
  const worst = Math.max(...phases.map(p => p.limit ? p.bookedCurrent / p.limit : 0));
  const value = phases.map(p => `${p.phase} ${text(p.bookedCurrent)}`).join(" · ");
  const limit = phases[0].limit;
  const div = card(limit ? `Phases (A of ${text(limit)})` : "Phases (A)", value, worst);
  div.id = "phases";
  return div;
}

function render(s) {
  $("title").textContent = `${s.stationId} (${s.strategy})`;
  const pausedCount = s.sessions.filter(paused).length;
  const cards = [
    card("Grid draw", `${text(s.gridPower)} / ${text(s.gridCapacity)} kW`, s.gridPower / s.gridCapacity),
    card("Allocated", `${text(s.allocatedPower)} / ${text(s.availablePower)} kW`, s.allocatedPower / Math.max(1, s.availablePower)),
    card("Sessions", pausedCount ? `${s.sessions.length} (${pausedCount} paused)` : String(s.sessions.length)),
  ];
  if (s.battery) cards.push(card(`Battery (${s.battery.mode}, ${text(s.battery.currentPower)} kW)`,
    `${text(s.battery.storedEnergy)} / ${text(s.battery.initialCapacity)} kWh`, s.battery.storedEnergy / Math.max(1e-9, s.battery.initialCapacity)));
  if (s.siteMeter) cards.push(siteCard(s.siteMeter, s.gridCapacity));
  $("legend-site").hidden = !s.siteMeter;
  if (s.externalLimit) cards.push(limitCard(s.externalLimit));
  if (s.phases) cards.push(phasesCard(s.phases));
  $("cards").replaceChildren(...cards);
  renderSessions(s.sessions);
  renderChargers(s.chargers);
}

// Session rows are kept from one event to the next (by session id), so that a Stop button
// is not replaced under the operator's pointer.
function renderSessions(sessions) {
  const body = $("sessions");
  const rows = new Map([...body.rows].map(row => [row.dataset.sessionId, row]));
  sessions.forEach((x, index) => {
    let row = rows.get(x.sessionId);
    rows.delete(x.sessionId);
    if (!row) {
      row = body.insertRow();
      row.dataset.sessionId = x.sessionId;
      for (let i = 0; i < 8; i++) row.insertCell();
      const stop = el("button", { type: "button", textContent: "Stop", title: "Stop this session" });
      stop.addEventListener("click", () => stopSession(x.sessionId, stop));
      cell(row, stop);
    }
    const values = [
      x.transactionId !== null ? `tx ${x.transactionId}` : x.sessionId.slice(0, 8),
      `${x.chargerId} #${x.connectorId}`,
      paused(x) ? (x.pausedSince ? `paused since ${clock(x.pausedSince)}` : "paused") : "running",
      allocatedText(x),
      x.limitedBy ?? "–",
      text(x.consumedPower),
      text(x.consumedEnergy, 2),
      clock(x.startedAt),
    ];
    values.forEach((value, i) => { if (row.cells[i].textContent !== value) row.cells[i].textContent = value; });
    row.cells[2].className = paused(x) ? "warn" : "on";
    for (const i of [3, 5, 6]) row.cells[i].className = "num";
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] ?? null);
  });
  for (const row of rows.values()) row.remove();
  $("no-sessions").hidden = sessions.length > 0;
}

function connectorChip(k) {
  const status = k.status ?? "Unknown";
  const faulty = k.errorCode && k.errorCode !== "NoError";
  const kind = faulty || status === "Faulted" ? "fault" : status === "Available" ? "available" : status === "Charging" ? "charging" : "";
  return el("span", { className: `chip ${kind}`.trim(), textContent: `${k.connectorId}: ${status}${faulty ? ` (${k.errorCode})` : ""}` });
}

function profileText(p) {
  if (!p) return ["–", ""];
  const target = p.connectorId === null ? "default" : `#${p.connectorId}`;
  const head = `${target} ${text(p.limit)} kW: `;
  if (p.result === null) return [`${head}awaiting answer (sent ${clock(p.sentAt)})`, "warn"];
  return [`${head}${p.result} ${clock(p.answeredAt)}`, p.result === "accepted" ? "on" : "off"];
}

function renderChargers(chargers) {
  const body = $("chargers");
  body.replaceChildren();
  for (const c of chargers) {
    const r = body.insertRow();
    const about = [c.vendor, c.model, c.firmwareVersion && `fw ${c.firmwareVersion}`].filter(Boolean).join(" · ");
    cell(r, el("span", {}, c.id, el("span", { className: "sub", textContent: about })));
    cell(r, c.connected ? "connected" : "offline", c.connected ? "on" : "off");
    cell(r, `${text(c.allocatedPower)} / ${text(c.maxPower)}`, "num");
    cell(r, el("span", {}, ...c.connectorStatus.map(connectorChip)));
    const [profile, kind] = profileText(c.lastProfile);
    cell(r, profile, kind);
    cell(r, c.smartCharging ? (c.limitsConfirmed ? "confirmed" : "pending") : "cannot be limited", c.limitsConfirmed ? "" : "warn");
  }
}

// -- actions ---------------------------------------------------------------------------------

async function stopSession(sessionId, button) {
  button.disabled = true;
  let response;
  try {
    response = await fetch(`sessions/${encodeURIComponent(sessionId)}/stop`, { method: "POST", cache: "no-store", headers: authorization() });
  } catch (e) {
    button.disabled = false;
    showError(`Cannot reach the controller: ${e.message}`);
    return;
  }
  if (response.status === 401 || response.status === 403) {
    button.disabled = false;
    const why = await errorMessage(response);
    askForToken(`Stopping a session needs a token with role 'operate' (${why}). Operate token:`, () => stopSession(sessionId, button));
    return;
  }
  if (!response.ok) {
    button.disabled = false;
    showError(`The session could not be stopped: ${await errorMessage(response)}`);
    return;
  }
  showError("");  // the stream removes the row
}

setInterval(drawChart, 5000);  // the window slides even when nothing changes
connect();
