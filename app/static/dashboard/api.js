// REST calls with the trader's key in the X-API-Key header (never in the URL).

export class ApiError extends Error {
  constructor(status, code, message, details, plain) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.plain = plain || message; // the server's own words, without the flattened details
  }
}

export class Api {
  constructor(getKey) {
    this.getKey = getKey;
  }

  async request(method, path, body) {
    const headers = { "X-API-Key": this.getKey() || "", Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "network", `network error: ${err.message}`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (!response.ok) {
      const e = data && data.error ? data.error : {};
      let message = e.message || `${method} ${path}: HTTP ${response.status}`;
      // A dead Kite session says all in its message (its details: the session, for the page to show).
      if (e.details && typeof e.details === "object" && e.code !== "session_expired") {
        const flat = flattenDetails(e.details);
        if (flat) message += ` (${flat})`;
      }
      throw new ApiError(response.status, e.code || "http_error", message, e.details, e.message);
    }
    return data;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, body ?? {}); }
  del(path) { return this.request("DELETE", path); }
}

function flattenDetails(details, prefix = "") {
  const parts = [];
  for (const [k, v] of Object.entries(details)) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) parts.push(`${name}: ${v.join(", ")}`);
    else if (v && typeof v === "object") { const inner = flattenDetails(v, name); if (inner) parts.push(inner); }
    else if (v != null) parts.push(`${name}: ${v}`);
  }
  return parts.slice(0, 4).join("; ");
}

export function qs(params) {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") s.set(k, v);
  const text = s.toString();
  return text ? `?${text}` : "";
}
