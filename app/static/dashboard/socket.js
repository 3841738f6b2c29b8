// A WebSocket that reconnects by itself with exponential backoff and jitter,
// keeps the connection alive with text pings, and reports its state.

export class LiveSocket {
  /**
   * @param {() => string|null} urlFor  builds the URL for each attempt (null: stay closed)
   * @param {{onMessage: Function, onOpen?: Function, onState?: Function}} handlers
   */
  constructor(urlFor, { onMessage, onOpen, onState }, { minDelay = 500, maxDelay = 10000, pingEvery = 15000 } = {}) {
    this.urlFor = urlFor;
    this.onMessage = onMessage;
    this.onOpen = onOpen || (() => {});
    this.onState = onState || (() => {});
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.pingEvery = pingEvery;
    this.ws = null;
    this.failures = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.wanted = false;
    this.state = "idle";
  }

  setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  start() {
    this.wanted = true;
    this.connect();
  }

  /** Close and connect again at once (new URL, e.g. another account or underlying). */
  restart() {
    this.stop();
    this.failures = 0;
    this.start();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, "client closed"); } catch { /* already gone */ }
    }
    this.setState("idle");
  }

  send(text) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(text); return true; }
    return false;
  }

  connect() {
    clearTimeout(this.retryTimer);
    const url = this.urlFor();
    if (!url || !this.wanted) { this.setState("idle"); return; }
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this.scheduleRetry(String(err));
      return;
    }
    this.ws = ws;
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = Date.now();
      this.setState("open");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send("ping"), this.pingEvery);
      this.onOpen();
    };
    ws.onmessage = (event) => {
      if (event.data === "pong") return;
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      // A connection that stayed up a while resets the backoff.
      if (openedAt && Date.now() - openedAt > 5000) this.failures = 0;
      this.scheduleRetry(event.reason || `code ${event.code}`);
    };
    ws.onerror = () => { /* onclose follows and schedules the retry */ };
  }

  scheduleRetry(reason) {
    if (!this.wanted) return;
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.failures);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    this.failures += 1;
    this.setState("retrying", `${reason}; retry in ${(delay / 1000).toFixed(1)}s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}

export function wsUrl(path, params) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const search = new URLSearchParams(params).toString();
  return `${proto}//${location.host}${path}${search ? "?" + search : ""}`;
}
