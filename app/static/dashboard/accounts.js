// Accounts panel: every account the key sees and its Kite session — active (with a countdown to
// its end, the next 06:00 IST), expired (since when, and what said so) or never logged in — and
// "Log in to Kite". Live from the order socket's `session` messages; GET /accounts again after
// them, on every (re)connect of that socket, when the page is shown again, and every 30 s (the
// socket only carries the selected account). Each row also has the kill switch (after a confirmation:
// cancel every open order, square off every position, halt the account) and, while the account is
// halted, its halted state and Resume.

import { duration, el, when } from "./format.js";

export const ACTIVE = "active";
export const EXPIRED = "expired";
export const MISSING = "missing";
const LABEL = { [ACTIVE]: "active", [EXPIRED]: "expired", [MISSING]: "not logged in" };
const REFRESH_MS = 30000;
const SETTLE_MS = 300; // a burst of session messages makes one GET /accounts
const AFTER_LOCAL_EXPIRY_MS = 2000; // then the service's own view of the expiry (and its reason)
const LOCAL_REASON = "Kite's daily expiry has passed";
const NOTE_MS = 20000;
// The login this tab went to Kite for (sessionStorage): confirmed on return even when the
// callback page only links back to the dashboard without ?logged_in=.
const PENDING = "ticker.loginPending";
const PENDING_MAX_MS = 15 * 60 * 1000;
const KILL_POLL_MS = 1000; // a kill switch started here is followed until it ends

/** The session as shown, with the moment its countdown ends (from expires_in_s: the server's
 *  clock, so a browser clock that is off does not move it; expires_at when absent). */
function received(view) {
  if (!view || typeof view !== "object" || !view.state) return null;
  let deadline = null;
  if (view.state === ACTIVE) {
    if (typeof view.expires_in_s === "number") deadline = Date.now() + view.expires_in_s * 1000;
    else if (view.expires_at) deadline = Date.parse(view.expires_at) || null;
  }
  return { ...view, deadline, receivedAt: Date.now() };
}

function sameSession(a, b) {
  if (!a || !b) return a === b;
  return a.state === b.state && a.login_at === b.login_at && a.expires_at === b.expires_at
    && a.expired_at === b.expired_at && a.reason === b.reason;
}

/** What the order ticket says when the account cannot trade (null: it can, or it is not known). */
export function cannotTrade(account, view) {
  if (!account || !view || view.state === ACTIVE) return null;
  if (view.state === EXPIRED) {
    const since = view.expired_at ? ` at ${when(view.expired_at)}` : "";
    return `${account} cannot trade: its Kite session expired${since}${view.reason ? ` (${view.reason})` : ""}.`;
  }
  return `${account} cannot trade: not logged in to Kite.`;
}

export class AccountsPanel {
  /**
   * @param {{api, dom: {body, empty, count, note}, toast, onSession?: Function, onPick?: Function,
   *          navigate?: Function}} options
   * onSession(accountId, view, changed) after every load and live update; onPick(accountId) when
   * the trader clicks an account's name; navigate(url) goes to Kite's login page.
   */
  constructor({ api, dom, toast, onSession, onPick, navigate }) {
    this.api = api;
    this.dom = dom;
    this.toast = toast;
    this.onSession = onSession || (() => {});
    this.onPick = onPick || (() => {});
    this.navigate = navigate || ((url) => window.location.assign(url));
    this.entries = new Map(); // account id -> { account, session, pushedAt, row, cells }
    this.selected = null;
    this.enabled = false;
    this.loading = null;
    this.settleTimer = 0;
    this.pollTimer = 0;
    this.noteTimer = 0;
    this.lastError = null;
    setInterval(() => this.tick(), 1000);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) this.refresh(); });
    // Back from Kite's page through the browser's history: the page may come from its cache.
    window.addEventListener("pageshow", (event) => { if (event.persisted) { this.render(); this.refresh(); } });
  }

  /** GET /accounts: the panel, and the list for the account picker. Throws what the API says. */
  async load() {
    const startedAt = Date.now();
    const accounts = await this.api.get("/accounts");
    this.enabled = true;
    this.lastError = null;
    this.setAccounts(Array.isArray(accounts) ? accounts : [], startedAt);
    clearInterval(this.pollTimer);
    this.pollTimer = setInterval(() => this.refresh(), REFRESH_MS);
    return accounts;
  }

  /** load() that only tells the trader once about a failure that repeats. */
  refresh() {
    if (!this.enabled) return Promise.resolve();
    if (this.loading) return this.loading;
    this.loading = this.load()
      .catch((err) => {
        if (err.message !== this.lastError) this.toast(`accounts: ${err.message}`);
        this.lastError = err.message;
      })
      .finally(() => { this.loading = null; });
    return this.loading;
  }

  scheduleRefresh(delay = SETTLE_MS) {
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => this.refresh(), delay);
  }

  clear() {
    this.enabled = false;
    clearInterval(this.pollTimer);
    clearTimeout(this.settleTimer);
    this.entries = new Map();
    this.render();
  }

  setAccounts(accounts, startedAt) {
    const previous = this.entries;
    this.entries = new Map();
    const changes = [];
    for (const account of accounts) {
      const id = account.account_id;
      const old = previous.get(id);
      let session = received(account.session);
      // A session message that came while this GET was under way is newer than its answer.
      if (old && old.pushedAt > startedAt) session = old.session;
      this.entries.set(id, { account, session, pushedAt: old ? old.pushedAt : 0 });
      changes.push([id, session, !old || !sameSession(old.session, session)]);
    }
    this.render();
    for (const [id, session, changed] of changes) this.onSession(id, session, changed);
  }

  /** A `session` message of the order socket. */
  sessionMessage(message) {
    const id = message.account_id || message.data?.account_id;
    if (!id || !message.data) return;
    // In order: one Redis channel per account, numbered and published in one step. (The seq is the
    // blotter's business; a Redis that lost its counters must not make this panel deaf.)
    this.applySession(id, message.data);
    this.scheduleRefresh(); // the whole picture (another key may see more accounts than the socket)
  }

  /** A session view from the socket or from a refused order (409 session_expired). */
  applySession(id, view) {
    const entry = this.entries.get(id);
    const session = received(view);
    if (!entry || !session) return;
    const changed = !sameSession(entry.session, session);
    entry.session = session;
    entry.pushedAt = Date.now();
    this.renderRow(entry);
    this.onSession(id, session, changed);
  }

  sessionOf(id) {
    return this.entries.get(id)?.session || null;
  }

  select(id) {
    this.selected = id;
    for (const [key, entry] of this.entries) entry.row?.classList.toggle("selected", key === id);
  }

  /** Every second: the countdowns; one that reaches zero shows the session expired at once. */
  tick() {
    const now = Date.now();
    for (const [id, entry] of this.entries) {
      const s = entry.session;
      if (!s || s.state !== ACTIVE || s.deadline === null) continue;
      if (s.deadline <= now) {
        entry.session = { ...s, state: EXPIRED, expired_at: s.expires_at || new Date(s.deadline).toISOString(),
          expires_at: null, expires_in_s: null, reason: LOCAL_REASON, deadline: null, local: true };
        this.renderRow(entry);
        this.onSession(id, entry.session, true);
        this.scheduleRefresh(AFTER_LOCAL_EXPIRY_MS);
      } else if (entry.cells) {
        entry.cells.detail.textContent = `expires in ${duration((s.deadline - now) / 1000)}`;
      }
    }
  }

  render() {
    const { body, empty, count } = this.dom;
    const rows = [];
    for (const entry of this.entries.values()) {
      this.createRow(entry);
      this.renderRow(entry);
      rows.push(entry.row);
    }
    body.replaceChildren(...rows);
    empty.hidden = rows.length > 0;
    const dead = [...this.entries.values()].filter((e) => e.session && e.session.state !== ACTIVE).length;
    count.textContent = !rows.length ? "" : dead ? `${dead} of ${rows.length} need login` : `${rows.length}`;
    count.classList.toggle("alert", dead > 0);
    count.title = dead ? "accounts whose Kite session is not active cannot trade until someone logs in" : "";
  }

  createRow(entry) {
    const id = entry.account.account_id;
    const tr = el("tr");
    tr.dataset.accountId = id;
    const cells = {
      name: el("td", "acct", id), state: el("td", "state"), detail: el("td", "detail"), action: el("td", "action"),
    };
    cells.name.title = `${id}${entry.account.broker_user_id ? ` · Kite user ${entry.account.broker_user_id}` : ""} · click to trade it`;
    cells.name.addEventListener("click", () => this.onPick(id));
    const login = el("button", "login");
    login.type = "button";
    login.addEventListener("click", () => this.login(id, login));
    const kill = el("button", "kill", "Kill");
    kill.type = "button";
    kill.title = "Kill switch: cancel every open order, square off every position at the broker, and halt the account";
    kill.addEventListener("click", () => this.killSwitch(id, kill));
    const resume = el("button", "resume ghost", "Resume");
    resume.type = "button";
    resume.title = "Let the halted account take new orders again";
    resume.addEventListener("click", () => this.resume(id, resume));
    cells.action.append(login, kill, resume);
    cells.login = login;
    cells.resume = resume;
    tr.append(cells.name, cells.state, cells.detail, cells.action);
    entry.row = tr;
    entry.cells = cells;
  }

  renderRow(entry) {
    if (!entry.cells) return;
    const s = entry.session;
    const c = entry.cells;
    const state = s ? s.state : "";
    entry.row.dataset.state = state;
    entry.row.classList.toggle("selected", entry.account.account_id === this.selected);
    const badge = el("span", "status", s ? LABEL[state] || state : "—");
    badge.dataset.s = state;
    const halted = entry.account.halted;
    entry.row.dataset.halted = halted ? "true" : "false";
    c.resume.hidden = !halted;
    if (halted) {
      const stop = el("span", "status halted", "halted");
      stop.dataset.s = "halted";
      stop.title = `halted ${when(halted.at)} by a kill switch${halted.reason ? ` (${halted.reason})` : ""}: `
        + "no new orders until Resume";
      c.state.replaceChildren(badge, " ", stop);
    } else {
      c.state.replaceChildren(badge);
    }
    let detail = "";
    let title = "";
    if (!s) {
      detail = "—";
      title = "the service does not report this account's Kite session";
    } else if (state === ACTIVE && s.deadline !== null) {
      detail = `expires in ${duration((s.deadline - Date.now()) / 1000)}`;
      title = `logged in ${when(s.login_at)}; Kite ends the session at ${when(s.expires_at)}`;
    } else if (state === ACTIVE) {
      detail = "active · no daily expiry";
      title = `logged in ${when(s.login_at)}; the service expects no daily end (KITE_SESSION_EXPIRY_IST=off): `
        + "it lasts until the broker refuses the token";
    } else if (state === EXPIRED) {
      detail = `since ${when(s.expired_at)}${s.reason ? ` · ${s.reason}` : ""}`;
      title = `expired ${s.expired_at || "?"}${s.reason ? `: ${s.reason}` : ""}${s.login_at ? `; last login ${when(s.login_at)}` : ""}`;
    } else {
      detail = "no access token yet";
      title = "this account has never been logged in to Kite";
    }
    c.detail.textContent = detail;
    c.detail.title = title;
    const urgent = state !== ACTIVE;
    c.login.textContent = urgent ? "Log in to Kite" : "Log in again";
    c.login.className = `login${urgent ? " urgent" : " ghost"}`;
    c.login.title = urgent ? "Log in through Kite's page: the account trades again once it returns here"
      : "Start a new Kite session now (the current one still ends at 06:00 IST)";
    c.login.hidden = !urgent && Boolean(entry.account.halted); // room for Resume: the halt comes first
  }

  /** The kill switch, after a confirmation; followed until it ends (the row shows the halt at once). */
  async killSwitch(id, button) {
    if (!window.confirm(`Kill switch for ${id}?\n\nEvery open order is cancelled, every position is squared off `
      + "at market, and the account is halted until someone resumes it.")) return;
    button.disabled = true;
    try {
      const operation = await this.api.post(`/accounts/${encodeURIComponent(id)}/kill-switch`, { reason: "dashboard" });
      this.note(`${id}: kill switch ${operation.status}: cancelling orders, squaring off positions.`, "error");
      this.refresh();
      this.followKillSwitch(id, operation.id);
    } catch (err) {
      this.toast(`kill switch ${id}: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  followKillSwitch(id, killSwitchId) {
    const poll = async () => {
      let operation;
      try {
        operation = await this.api.get(`/kill-switches/${encodeURIComponent(killSwitchId)}`);
      } catch (err) {
        this.toast(`kill switch ${id}: ${err.message}`);
        return;
      }
      if (operation.status === "running") { setTimeout(poll, KILL_POLL_MS); return; }
      const ok = operation.status === "done";
      this.note(ok ? `${id}: kill switch done, flat at the broker; halted until Resume.`
        : `${id}: kill switch failed: ${operation.error || "no reason given"} (still halted).`, ok ? "ok" : "error");
      this.refresh();
    };
    setTimeout(poll, KILL_POLL_MS);
  }

  /** A `kill_switch` or `halt` message of the order socket: the halted state changed. */
  haltMessage() {
    this.scheduleRefresh();
  }

  async resume(id, button) {
    if (!window.confirm(`Resume ${id}? It takes new orders again.`)) return;
    button.disabled = true;
    try {
      await this.api.post(`/accounts/${encodeURIComponent(id)}/resume`);
      this.note(`${id} resumed: it takes new orders again.`, "ok");
      this.refresh();
    } catch (err) {
      this.toast(`resume ${id}: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  /** Kite's login page for the account: the service signs the URL (the key goes in a header, so
   *  the dashboard asks for it as JSON, then navigates). */
  async login(id, button) {
    if (button) button.disabled = true;
    try {
      const answer = await this.api.get(`/accounts/${encodeURIComponent(id)}/login`);
      const url = answer && answer.login_url;
      if (!url || !/^https?:\/\//i.test(url)) throw new Error("the service gave no login URL");
      try { sessionStorage.setItem(PENDING, JSON.stringify({ account: id, at: Date.now() })); } catch { /* private mode */ }
      this.navigate(url);
    } catch (err) {
      this.toast(`log in ${id}: ${err.message}`);
      if (button) button.disabled = false;
    }
  }

  /** After Kite's callback sent the browser back (?logged_in=, or the login this tab started). */
  confirmLogin(loggedIn) {
    let pending = null;
    try {
      pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
      sessionStorage.removeItem(PENDING);
    } catch { /* private mode, or not ours */ }
    if (pending && !(Date.now() - pending.at < PENDING_MAX_MS)) pending = null;
    const id = loggedIn || pending?.account;
    if (!id) return;
    const s = this.sessionOf(id);
    const fresh = s && s.state === ACTIVE
      && (loggedIn || !s.login_at || Date.parse(s.login_at) >= pending.at - 60000);
    if (fresh) {
      const until = s.expires_at ? ` until ${when(s.expires_at)}` : "";
      this.note(`${id} logged in to Kite: session active${until}.`, "ok");
      this.toast(`${id}: Kite session active`, "info");
    } else if (loggedIn) {
      this.note(s ? `Back from Kite's login for ${id}, but its session is ${LABEL[s.state] || s.state}.`
        : `Back from Kite's login for ${id}.`, s ? "error" : "ok");
    }
    // A pending login with no new session: the person came back without logging in; say nothing.
  }

  note(text, kind) {
    const note = this.dom.note;
    clearTimeout(this.noteTimer);
    note.textContent = text;
    note.dataset.kind = kind;
    note.hidden = false;
    this.noteTimer = setTimeout(() => { note.hidden = true; }, NOTE_MS);
  }
}
