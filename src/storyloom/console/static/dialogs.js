// Accessible <dialog>s for the actions that change state: Resume, Cancel, Resolve / Dismiss, Silence.
// Native modal dialogs trap focus and close on Escape; focus returns to the button that opened them.
// Required fields are checked before anything is sent; the API's own errors are shown inline too.

import { api, clearErrors, fieldError, showProblem, toast } from "./api.js";

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Where this browser keeps the last successful resume's agent, provider and model for a plan. */
function lastResumeKey(planId) {
  return `storyloom:last-resume:${planId}`;
}

export function parseDuration(text) {
  const match = DURATION.exec(text || "");
  return match ? Number(match[1]) * UNIT_MS[match[2]] : null;
}

function setValue(form, name, value) {
  const control = form.elements.namedItem(name);
  if (!control) return;
  if (control instanceof RadioNodeList) control.value = value ?? "";
  else if (control.type === "checkbox") control.checked = Boolean(value);
  else control.value = value ?? "";
}

function values(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "radio") { if (el.checked) out[el.name] = el.value; continue; }
    out[el.name] = el.type === "checkbox" ? el.checked : el.value;
  }
  return out;
}

export function openDialog(dialog, fill, trigger) {
  const form = dialog.querySelector("form");
  dialog.opener = trigger || document.activeElement;
  form.reset();
  clearErrors(form);
  for (const [name, value] of Object.entries(fill)) {
    setValue(form, name, value);
    for (const el of dialog.querySelectorAll(`[data-fill="${name}"]`)) el.textContent = value ?? "";
  }
  dialog.showModal();
  const first = [...form.elements].find((el) => el.required && !el.value && !el.disabled)
    || [...form.elements].find((el) => !el.disabled && el.type !== "hidden" && el.tagName !== "FIELDSET");
  if (first) first.focus();
}

function busy(form, on) {
  const submit = form.querySelector('[type="submit"]');
  if (submit) { submit.disabled = on; submit.setAttribute("aria-busy", on ? "true" : "false"); }
}

/** Check the required fields; show each missing one inline. Returns true when the form may be sent. */
function requireFields(form, checks) {
  let ok = true;
  let firstBad = null;
  for (const [name, message] of checks) {
    const control = form.elements.namedItem(name);
    const value = control ? String(control.value || "").trim() : "";
    if (!value) {
      fieldError(form, name, message);
      ok = false;
      firstBad = firstBad || control;
    }
  }
  if (!ok) {
    const box = form.querySelector(".form-error");
    if (box) {
      box.textContent = "";
      const p = document.createElement("p");
      p.innerHTML = '<span aria-hidden="true">⚠</span> ';
      p.append(document.createTextNode("Fill in the required fields before sending."));
      box.append(p);
      box.hidden = false;
    }
    if (firstBad && firstBad.focus) firstBad.focus();
  }
  return ok;
}

function done(form, message) {
  form.closest("dialog").close();
  toast(message);
  document.dispatchEvent(new CustomEvent("storyloom:changed"));
}

const SUBMIT = {
  async resume(form) {
    const v = values(form);
    if (!requireFields(form, [
      ["agent_id", "Required: choose the agent that resumes the item."],
      ["provider", "Required: the LLM provider (offline or openai)."],
      ["model", "Required: the model name the provider should use."],
    ])) return;
    const body = { agent_id: v.agent_id, provider: v.provider.trim(), model: v.model.trim() };
    if (v.task_id.trim()) body.task_id = v.task_id.trim();
    if (v.notes.trim()) body.notes = v.notes.trim();
    const path = `/api/fiction/plans/${encodeURIComponent(v.plan_id)}/backlog/${encodeURIComponent(v.backlog_id)}/resume`;
    const res = await api(path, { method: "POST", body });
    if (!res.ok) return showProblem(form, res.problem);
    try {
      localStorage.setItem(lastResumeKey(v.plan_id), JSON.stringify({ agent_id: body.agent_id, provider: body.provider, model: body.model }));
    } catch { /* storage may be off */ }
    done(form, `Resumed ${v.backlog_id} as task ${res.data && res.data.task_id ? res.data.task_id : "(new)"}.`);
  },

  async cancel(form) {
    const v = values(form);
    if (!requireFields(form, [["agent_id", "Required: choose the agent that cancels the item (of the plan's author persona)."]])) return;
    const body = { agent_id: v.agent_id };
    if (v.notes.trim()) body.notes = v.notes.trim();
    const path = `/plans/${encodeURIComponent(v.plan_id)}/backlog/${encodeURIComponent(v.backlog_id)}/cancel`;
    const res = await api(path, { method: "POST", body });
    if (!res.ok) return showProblem(form, res.problem);
    done(form, `Cancelled ${v.backlog_id}${res.data && res.data.cancelled_task_id ? ` (task ${res.data.cancelled_task_id} stopped)` : ""}.`);
  },

  async resolve(form) {
    const v = values(form);
    if (!requireFields(form, [
      ["agent_id", "Required: choose the agent acting for the obligation's persona or the plan's author."],
      ["notes", "Required: notes saying what was done and why (kept in the history)."],
    ])) return;
    const body = { action: v.action, notes: v.notes.trim(), agent_id: v.agent_id, voice_drift: Boolean(v.voice_drift) };
    const path = `/api/fiction/plans/${encodeURIComponent(v.plan_id)}/persona-obligations/${encodeURIComponent(v.obligation_id)}/resolve`;
    const res = await api(path, { method: "POST", body });
    if (!res.ok) return showProblem(form, res.problem);
    done(form, `Obligation ${v.obligation_id} ${v.action === "dismiss" ? "dismissed" : "resolved"}.`);
  },

  async silence(form) {
    const v = values(form);
    if (!requireFields(form, [
      ["matchers", "Required: at least one matcher, e.g. alert_id=\"planner:phase-failed\"."],
      ["duration", "Required: how long, e.g. 2h."],
      ["comment", "Required: why this is silenced (shown to everyone)."],
    ])) return;
    const millis = parseDuration(v.duration);
    if (!millis) {
      fieldError(form, "ends_at", "Use a duration like 30m, 2h or 1d.");
      form.elements.namedItem("duration").focus();
      return;
    }
    const matchers = v.matchers.split("\n").map((line) => line.trim()).filter(Boolean);
    const body = { matchers, ends_at: new Date(Date.now() + millis).toISOString(), comment: v.comment.trim() };
    const res = await api("/api/silences", { method: "POST", body });
    if (!res.ok) return showProblem(form, res.problem);
    done(form, `Silence ${res.data && (res.data.id || res.data.silence_id) || ""} created.`);
  },
};

export function bindDialogs() {
  for (const dialog of document.querySelectorAll("dialog.dialog")) {
    const form = dialog.querySelector("form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      busy(form, true);
      try { await SUBMIT[form.dataset.form](form); } finally { busy(form, false); }
    });
    for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      if (dialog.opener && document.contains(dialog.opener)) dialog.opener.focus();
      document.dispatchEvent(new CustomEvent("storyloom:dialog-closed"));
    });
    // Clicking the backdrop (outside the form) closes, like Escape.
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  }
  const agent = document.getElementById("resume-agent");
  if (agent) {
    agent.addEventListener("change", () => {
      const option = agent.selectedOptions[0];
      const form = agent.form;
      for (const name of ["provider", "model"]) {
        const control = form.elements.namedItem(name);
        if (option && !control.value && option.dataset[name]) control.value = option.dataset[name];
      }
    });
  }
  const mode = document.querySelectorAll('#resolve-dialog input[name="action"]');
  for (const radio of mode) {
    radio.addEventListener("change", () => {
      const label = radio.value === "dismiss" ? "Dismiss" : "Resolve";
      for (const el of document.querySelectorAll('#resolve-dialog [data-fill="mode_label"]')) el.textContent = label;
    });
  }
}

/** Resume pre-fill: the last successful resume on this plan (the operator's latest working choice of
 *  agent, provider and model), else the item's own. The dialog says which it used. */
export function resumeFill(data) {
  let last = null;
  try { last = JSON.parse(localStorage.getItem(lastResumeKey(data.planId)) || "null"); } catch { last = null; }
  const chosen = last || { agent_id: data.agentId, provider: data.provider, model: data.model };
  return {
    plan_id: data.planId,
    plan_name: data.planName || data.planId,
    backlog_id: data.backlogId,
    agent_id: chosen.agent_id || "",
    provider: chosen.provider || "",
    model: chosen.model || "",
    task_id: data.taskId || "",
    notes: "",
    prefill_source: last
      ? "Agent, provider and model are pre-filled from your last successful resume on this plan."
      : "Agent, provider and model are pre-filled from the item.",
  };
}
