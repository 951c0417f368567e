// Fetch wrapper for the console: marks requests as the console's, sends the CSRF cookie back as a
// header, and turns problem+json answers into something a form can show inline.

export const CONSOLE_HEADER = "X-Console-Client";
export const CSRF_HEADER = "X-CSRF-Token";

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function csrfToken() {
  return cookie("storyloom_csrf");
}

/** Call the API; resolves to {ok, status, data, problem} and never throws for HTTP errors. */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json, application/problem+json", [CONSOLE_HEADER]: "storyloom-console", ...headers },
  };
  if (method !== "GET" && method !== "HEAD") init.headers[CSRF_HEADER] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { ok: false, status: 0, data: null, problem: { title: "Network error", detail: `The server could not be reached (${err.message}). Check the connection and try again.`, errors: [] } };
  }
  const type = response.headers.get("content-type") || "";
  let data = null;
  if (type.includes("json")) {
    try { data = await response.json(); } catch { data = null; }
  } else if (response.status !== 204) {
    data = await response.text();
  }
  if (response.ok) return { ok: true, status: response.status, data, problem: null };
  const problem = data && typeof data === "object"
    ? { title: data.title || response.statusText, detail: data.detail || response.statusText, errors: data.errors || [], code: data.code, status: response.status }
    : { title: response.statusText, detail: String(data || response.statusText), errors: [], status: response.status };
  return { ok: false, status: response.status, data, problem };
}

/** The field a problem's error `loc` points at: the last string part (["body", "notes"] → "notes"). */
export function fieldOf(loc) {
  if (!Array.isArray(loc)) return null;
  for (let i = loc.length - 1; i >= 0; i -= 1) {
    if (typeof loc[i] === "string" && loc[i] !== "body") return loc[i];
  }
  return null;
}

export function clearErrors(form) {
  const box = form.querySelector(".form-error");
  if (box) { box.hidden = true; box.textContent = ""; }
  for (const el of form.querySelectorAll("[data-error-for]")) { el.hidden = true; el.textContent = ""; }
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/** Show one field's error next to it (and mark the control invalid). Returns false when no slot exists. */
export function fieldError(form, name, message) {
  const slot = form.querySelector(`[data-error-for="${name}"]`);
  const control = form.elements.namedItem(name);
  if (control && control.setAttribute) control.setAttribute("aria-invalid", "true");
  if (!slot) return false;
  slot.textContent = message;
  slot.hidden = false;
  return true;
}

/** Show a problem+json answer inline: `detail` at the top, each `errors[]` entry next to its field. */
export function showProblem(form, problem) {
  const box = form.querySelector(".form-error");
  const unplaced = [];
  for (const err of problem.errors || []) {
    const name = fieldOf(err.loc);
    if (!name || !fieldError(form, name, err.msg)) unplaced.push(err);
  }
  if (box) {
    box.textContent = "";
    const head = document.createElement("p");
    const status = problem.status ? `${problem.status} ${problem.title || ""}`.trim() : problem.title || "Error";
    head.innerHTML = '<span aria-hidden="true">⚠</span> ';
    const strong = document.createElement("strong");
    strong.textContent = `${status}: `;
    head.append(strong, document.createTextNode(problem.detail || ""));
    box.append(head);
    if (unplaced.length) {
      const list = document.createElement("ul");
      for (const err of unplaced) {
        const li = document.createElement("li");
        li.textContent = `${(err.loc || []).join(".")}: ${err.msg}`;
        list.append(li);
      }
      box.append(list);
    }
    box.hidden = false;
  }
}

/** A short message in the page's live status region. */
export function toast(message, kind = "ok") {
  const el = document.getElementById("toast");
  if (!el) return;
  el.dataset.kind = kind;
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}
