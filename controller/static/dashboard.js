// The operator's dashboard (served at /dashboard.js, docs/api.md): polls /station/status
// every second. A file of its own, not inline in the page: the page's Content-Security-Policy
// runs no inline script (docs/security-rest.md).
"use strict";
const text = (v, digits = 1) => v === null || v === undefined ? "–" : (typeof v === "number" ? v.toFixed(digits).replace(/\.0+$/, "") : String(v));
function cell(row, value, cls) { const td = row.insertCell(); td.textContent = value; if (cls) td.className = cls; return td; }
function card(title, value, fraction) {
  const div = document.createElement("div"); div.className = "card";
  div.append(title, Object.assign(document.createElement("b"), { textContent: value }));
  if (fraction !== undefined) {
    const bar = Object.assign(document.createElement("div"), { className: "bar" });
    const fill = document.createElement("div");
    // Through the CSSOM, which the page's Content-Security-Policy allows (a style attribute it would not).
    fill.style.width = `${Math.max(0, Math.min(100, fraction * 100))}%`;
    bar.append(fill);
    div.append(bar);
  }
  return div;
}
function render(s) {
  document.getElementById("title").textContent = `${s.stationId} (${s.strategy})`;
  const cards = document.getElementById("cards"); cards.replaceChildren(
    card("Grid draw", `${text(s.gridPower)} / ${text(s.gridCapacity)} kW`, s.gridPower / s.gridCapacity),
    card("Allocated", `${text(s.allocatedPower)} / ${text(s.availablePower)} kW`, s.allocatedPower / Math.max(1, s.availablePower)),
    card("Sessions", String(s.sessions.length)));
  if (s.battery) cards.append(card(`Battery (${s.battery.mode}, ${text(s.battery.currentPower)} kW)`,
    `${text(s.battery.storedEnergy)} / ${text(s.battery.initialCapacity)} kWh`, s.battery.storedEnergy / Math.max(1e-9, s.battery.initialCapacity)));
  const chargers = document.getElementById("chargers"); chargers.replaceChildren();
  for (const c of s.chargers) {
    const r = chargers.insertRow();
    cell(r, c.id);
    cell(r, c.connected ? "connected" : "offline", c.connected ? "on" : "off");
    cell(r, `${text(c.allocatedPower)} / ${text(c.maxPower)}`, "num");
    cell(r, c.connectorStatus.map(k => `${k.connectorId}: ${k.status}${k.errorCode && k.errorCode !== "NoError" ? " (" + k.errorCode + ")" : ""}`).join(", "));
    cell(r, c.smartCharging ? (c.limitsConfirmed ? "confirmed" : "pending") : "cannot be limited", c.limitsConfirmed ? "" : "warn");
  }
  const sessions = document.getElementById("sessions"); sessions.replaceChildren();
  for (const x of s.sessions) {
    const r = sessions.insertRow();
    cell(r, x.transactionId !== null ? `tx ${x.transactionId}` : x.sessionId.slice(0, 8));
    cell(r, `${x.chargerId} #${x.connectorId}`);
    cell(r, text(x.allocatedPower), "num");
    cell(r, x.limitedBy ?? "–");
    cell(r, text(x.consumedPower), "num");
    cell(r, text(x.consumedEnergy, 2), "num");
    cell(r, new Date(x.startedAt).toLocaleTimeString());
  }
}
// The API token, when the controller asks for one: typed by the operator, kept for this tab
// only (sessionStorage, never a cookie) and sent in the Authorization header.
const TOKEN_KEY = "ev-controller-token";
let waitingForToken = false;

function showError(message) { document.getElementById("error").textContent = message; }

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch (e) { /* not JSON: the status says enough */ }
  return `status ${response.status}`;
}

function askForToken(note) {
  waitingForToken = true;
  document.getElementById("login-note").textContent = note;
  document.getElementById("login").hidden = false;
  document.getElementById("token").focus();
}

function useToken(event) {
  event.preventDefault();
  const field = document.getElementById("token");
  const token = field.value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  field.value = "";
  document.getElementById("login").hidden = true;
  waitingForToken = false;
  poll();
}

async function poll() {
  if (waitingForToken) return;
  try {
    const response = await fetch("station/status", { cache: "no-store", headers: authorization() });
    if (response.status === 401) {
      const rejected = sessionStorage.getItem(TOKEN_KEY) !== null;
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(rejected ? "The token was not accepted. API token:" : "This controller needs an API token:");
      showError("");
      return;
    }
    if (!response.ok) {
      showError(`The controller refused: ${await errorMessage(response)}`);
      return;
    }
    render(await response.json());
    showError("");
  } catch (e) {
    showError(`Cannot reach the controller: ${e.message}`);
  }
}

document.getElementById("login").addEventListener("submit", useToken);
poll(); setInterval(poll, 1000);
