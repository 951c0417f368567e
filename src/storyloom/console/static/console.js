// The console's page script: live regions refreshed over SSE, action buttons, forms.

import { api, clearErrors, fieldError, showProblem, toast } from "./api.js";
import { bindDialogs, openDialog, resumeFill } from "./dialogs.js";
import { startLive } from "./live.js";

window.__storyloomPageId = window.__storyloomPageId || Math.random().toString(36).slice(2);

const body = document.body;
const pageKinds = (body.dataset.liveKinds || "").split(/\s+/).filter(Boolean);
const pagePlan = body.dataset.livePlan || "";

// --- live regions: re-render from the server, swap only what changed --------------------------------

let refreshing = false;
let again = false;
let timer = null;

function dialogOpen() {
  return Boolean(document.querySelector("dialog[open]"));
}

function schedule(delay = 250) {
  clearTimeout(timer);
  timer = setTimeout(refresh, delay);
}

async function refresh() {
  if (dialogOpen()) { again = true; return; }
  if (refreshing) { again = true; return; }
  refreshing = true;
  again = false;
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Partial": "1" } });
    if (response.redirected && new URL(response.url).pathname === "/login") { window.location.assign(response.url); return; }
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    swap(doc);
  } catch (err) {
    console.warn("live refresh failed", err);
  } finally {
    refreshing = false;
    if (again) schedule(200);
  }
}

function swap(doc) {
  for (const region of document.querySelectorAll("[data-live-region][id]")) {
    const fresh = doc.getElementById(region.id);
    if (!fresh || fresh.innerHTML === region.innerHTML) continue;
    const focused = region.contains(document.activeElement) ? focusKey(document.activeElement) : null;
    const open = [...region.querySelectorAll("details")].map((d) => d.open);
    region.replaceWith(fresh);
    const details = fresh.querySelectorAll("details");
    if (details.length === open.length) details.forEach((d, i) => { d.open = open[i]; });
    if (focused) {
      const target = fresh.querySelector(focused);
      if (target) target.focus();
    }
  }
  const chip = doc.getElementById("status-chip");
  const current = document.getElementById("status-chip");
  if (chip && current && chip.outerHTML !== current.outerHTML) current.replaceWith(chip);
}

function focusKey(el) {
  if (el.id) return `#${CSS.escape(el.id)}`;
  const attrs = ["data-action", "data-backlog-id", "data-obligation-id", "data-mode", "data-silence-id", "data-delivery-id", "data-fingerprint"];
  const parts = attrs.filter((a) => el.hasAttribute(a)).map((a) => `[${a}="${CSS.escape(el.getAttribute(a))}"]`);
  return parts.length ? el.tagName.toLowerCase() + parts.join("") : null;
}

function relevant(kind, data) {
  if (!pageKinds.includes(kind)) return false;
  if (pagePlan && (kind === "backlog" || kind === "obligation") && data.plan_id && data.plan_id !== pagePlan) return false;
  return true;
}

function setHealth(data) {
  const chip = document.getElementById("status-chip");
  if (!chip || !data.status) return;
  const icons = { healthy: "✓", degraded: "▲", critical: "✖" };
  chip.className = `chip status-${data.status}`;
  chip.setAttribute("aria-label", `PlannerHealth status: ${data.status}`);
  chip.querySelector(".chip-text").textContent = data.status;
  chip.querySelector(".chip-icon").textContent = icons[data.status] || "?";
}

// --- actions ---------------------------------------------------------------------------------------

function inlineError(button, problem) {
  const holder = button.closest("td, .actions, p, div") || button.parentElement;
  let slot = holder.querySelector(".inline-error");
  if (!slot) {
    slot = document.createElement("p");
    slot.className = "inline-error";
    slot.setAttribute("role", "alert");
    holder.append(slot);
  }
  slot.textContent = `⚠ ${problem.status ? `${problem.status} ` : ""}${problem.detail || problem.title}`;
}

const ACTIONS = {
  resume(button) {
    openDialog(document.getElementById("resume-dialog"), resumeFill(button.dataset), button);
  },
  cancel(button) {
    const d = button.dataset;
    openDialog(document.getElementById("cancel-dialog"), {
      plan_id: d.planId,
      plan_name: d.planName || d.planId,
      backlog_id: d.backlogId,
      agent_id: d.agentId || "",
      description: d.description || "",
      notes: "",
    }, button);
  },
  resolve(button) {
    const d = button.dataset;
    openDialog(document.getElementById("resolve-dialog"), {
      plan_id: d.planId,
      obligation_id: d.obligationId,
      agent_id: d.agentId || "",
      action: d.mode === "dismiss" ? "dismiss" : "resolve",
      mode_label: d.mode === "dismiss" ? "Dismiss" : "Resolve",
      obligation_title: d.title || "",
      notes: "",
      voice_drift: false,
    }, button);
  },
  silence(button) {
    openDialog(document.getElementById("silence-dialog"), {
      matchers: button.dataset.matchers || "",
      duration: "2h",
      comment: "",
    }, button);
  },
  async "expire-silence"(button) {
    const id = button.dataset.silenceId;
    button.disabled = true;
    const res = await api(`/api/silences/${encodeURIComponent(id)}`, { method: "DELETE" });
    button.disabled = false;
    if (!res.ok) return inlineError(button, res.problem);
    toast(`Silence ${id} expired.`);
    schedule(0);
  },
  async replay(button) {
    const id = button.dataset.deliveryId;
    button.disabled = true;
    const res = await api(`/api/deliveries/${encodeURIComponent(id)}/replay`, { method: "POST" });
    button.disabled = false;
    if (!res.ok) return inlineError(button, res.problem);
    toast(`Delivery ${id} replayed${res.data && (res.data.delivery_id || res.data.id) ? ` as ${res.data.delivery_id || res.data.id}` : ""}.`);
    schedule(0);
  },
};

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  const action = ACTIONS[button.dataset.action];
  if (action) {
    event.preventDefault();
    action(button);
  }
});

// --- the routing test form ---------------------------------------------------------------------------

const routeTest = document.querySelector('form[data-form="route-test"]');
if (routeTest) {
  routeTest.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(routeTest);
    const labels = {};
    const bad = [];
    for (const line of routeTest.elements.namedItem("labels").value.split("\n")) {
      if (!line.trim()) continue;
      const at = line.indexOf("=");
      if (at < 1) { bad.push(line.trim()); continue; }
      labels[line.slice(0, at).trim()] = line.slice(at + 1).trim().replace(/^"(.*)"$/, "$1");
    }
    if (bad.length || !Object.keys(labels).length) {
      fieldError(routeTest, "labels", bad.length ? `Not name=value: ${bad.join(", ")}` : "Required: at least one name=value line.");
      return;
    }
    const res = await api("/api/alert-routes/test", { method: "POST", body: { labels } });
    const out = document.getElementById("route-test-result");
    out.textContent = "";
    if (!res.ok) return showProblem(routeTest, res.problem);
    const receivers = (res.data && res.data.receivers) || [];
    const p = document.createElement("p");
    p.append(document.createTextNode(receivers.length ? "Reaches, in routing order: " : "Reaches no receiver."));
    for (const name of receivers) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = name;
      p.append(tag, document.createTextNode(" "));
    }
    out.append(p);
  });
}

// --- start ---------------------------------------------------------------------------------------------

bindDialogs();
const live = startLive();
live.on("*", (data, kind) => {
  if (kind === "health") {
    // Every 10 s: re-render only when the status moved (the other kinds carry the changes themselves).
    const chip = document.querySelector("#status-chip .chip-text");
    const changed = chip && data.status && chip.textContent.trim() !== data.status;
    setHealth(data);
    if (changed && relevant(kind, data)) schedule();
    return;
  }
  if (relevant(kind, data)) schedule();
});
live.on("open", () => { if (pageKinds.length && live.connects > 1) schedule(0); });
document.addEventListener("storyloom:changed", () => schedule(0));
document.addEventListener("storyloom:dialog-closed", () => { if (again) schedule(0); });
