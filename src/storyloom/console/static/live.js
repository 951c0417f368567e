// Live updates over Server-Sent Events, with a visible connection state and reconnects with backoff.
// `window.__storyloomLive` exposes the connection (tests and the curious can call reconnect()).

const STREAM = "/api/events/stream";
const KINDS = ["alert", "backlog", "obligation", "delivery", "health"];
const LABELS = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };

export class Live {
  constructor(indicator) {
    this.indicator = indicator;
    this.source = null;
    this.lastId = null;
    this.attempt = 0;
    this.timer = null;
    this.connects = 0;
    this.listeners = new Map();
    this.state = "connecting";
  }

  on(kind, fn) {
    if (!this.listeners.has(kind)) this.listeners.set(kind, new Set());
    this.listeners.get(kind).add(fn);
  }

  emit(kind, data) {
    for (const fn of this.listeners.get(kind) || []) {
      try { fn(data, kind); } catch (err) { console.error("live listener failed", err); }
    }
    for (const fn of this.listeners.get("*") || []) {
      try { fn(data, kind); } catch (err) { console.error("live listener failed", err); }
    }
  }

  setState(state) {
    this.state = state;
    if (!this.indicator) return;
    this.indicator.dataset.state = state;
    const text = this.indicator.querySelector(".live-text");
    if (text) text.textContent = LABELS[state] || state;
    this.indicator.title = `Live updates: ${LABELS[state] || state}`;
  }

  connect() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    const url = this.lastId ? `${STREAM}?after=${encodeURIComponent(this.lastId)}` : STREAM;
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      if (this.source !== source) return;
      this.attempt = 0;
      this.connects += 1;
      this.setState("live");
      this.emit("open", {});
    };
    source.onerror = () => {
      if (this.source !== source) return;
      this.lost();
    };
    source.addEventListener("hello", (event) => {
      if (event.lastEventId) this.lastId = event.lastEventId;
    });
    for (const kind of KINDS) {
      source.addEventListener(kind, (event) => {
        if (event.lastEventId) this.lastId = event.lastEventId;
        let data = {};
        try { data = JSON.parse(event.data); } catch { data = { raw: event.data }; }
        this.emit(kind, data);
      });
    }
  }

  /** The stream dropped: show it and try again with backoff (0.5 s, 1 s, 2 s … at most 5 s). */
  lost() {
    if (this.source) this.source.close();
    this.source = null;
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    const delay = Math.min(5000, 500 * 2 ** this.attempt);
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Drop the current connection as if the network had, then reconnect (resuming from the last event id). */
  drop() {
    this.lost();
  }

  reconnect() {
    if (this.source) this.source.close();
    this.source = null;
    this.attempt = 0;
    this.setState("reconnecting");
    this.connect();
  }
}

export function startLive() {
  const live = new Live(document.getElementById("live-indicator"));
  window.__storyloomLive = live;
  window.addEventListener("online", () => live.reconnect());
  window.addEventListener("pagehide", () => { if (live.source) live.source.close(); });
  live.connect();
  return live;
}
