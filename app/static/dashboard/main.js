// Wires the dashboard together: key and account, the accounts panel (Kite sessions), the chain
// and its tick socket, the blotter and its order socket, the strategy builder.

import { AccountsPanel } from "./accounts.js";
import { Api, qs } from "./api.js";
import { Blotter, DeadLetters } from "./blotter.js";
import { OptionChain } from "./chain.js";
import { el, num, signed } from "./format.js";
import { LiveSocket, wsUrl } from "./socket.js";
import { StrategyBuilder } from "./strategy.js";

const $ = (id) => document.getElementById(id);
const store = {
  get: (k) => { try { return localStorage.getItem(`ticker.${k}`); } catch { return null; } },
  set: (k, v) => { try { v == null ? localStorage.removeItem(`ticker.${k}`) : localStorage.setItem(`ticker.${k}`, v); } catch { /* private mode */ } },
};

const state = { key: store.get("apiKey") || "", account: null, underlying: null, expiry: null, subscribed: new Set() };
const api = new Api(() => state.key);

function toast(message, kind = "error") {
  const box = $("toasts");
  const node = el("div", `toast ${kind}`, message);
  box.append(node);
  while (box.children.length > 5) box.firstElementChild.remove();
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 4000);
}

// ---- option chain and ticks -------------------------------------------------
const chain = new OptionChain({
  body: $("chain-body"), wrap: $("chain-wrap"), empty: $("chain-empty"),
  onPick: (entry, side) => strategy.add(entry, side),
  onChange: () => { strategy.refresh(); $("atm-strike").textContent = chain.atm != null ? num(chain.atm, 0) : "—"; },
  onSpot: (spot, future) => {
    $("spot-label").textContent = spot?.tradingsymbol || "SPOT";
    $("spot-price").textContent = num(spot?.last_price);
    $("spot-price").title = spot?.change != null ? `${signed(spot.change)}%` : "";
    $("future-label").textContent = future?.tradingsymbol || "FUT";
    $("future-price").textContent = num(future?.last_price);
  },
});

let tickCount = 0;
const ticks = new LiveSocket(
  () => (state.key && state.underlying ? wsUrl("/ws/ticks", {
    underlying: state.underlying.toLowerCase(),
    ...(chain.spot || chain.future ? { tokens: [chain.spot?.instrument_token, chain.future?.instrument_token].filter(Boolean).join(",") } : {}),
    api_key: state.key,
  }) : null),
  {
    onMessage: (message) => {
      if (message.type === "ticks") { tickCount += message.ticks?.length || 0; chain.ingest(message); }
      else if (message.type === "error") toast(`ticks: ${message.message}`);
    },
    onOpen: () => { if (ticks.openedBefore) reloadChain(true); ticks.openedBefore = true; },
    onState: (s, detail) => showState("ticks-state", s, detail),
  },
);
setInterval(() => { $("ticks-rate").textContent = ticks.state === "open" ? `${tickCount}/s` : ""; tickCount = 0; }, 1000);

function showState(id, s, detail) {
  const pill = $(id);
  pill.dataset.state = s;
  pill.title = `${pill.title.split(":")[0]}: ${s}${detail ? ` (${detail})` : ""}`;
}

async function loadUnderlyings() {
  const { underlyings } = await api.get("/option-chain/underlyings");
  const select = $("underlying");
  select.replaceChildren(...underlyings.map((u) => el("option", "", u)));
  const saved = store.get("underlying");
  state.underlying = underlyings.includes(saved) ? saved : underlyings.includes("NIFTY") ? "NIFTY" : underlyings[0] || null;
  select.value = state.underlying || "";
}

async function reloadChain(keepScroll = false) {
  if (!state.underlying) { chain.clear("No underlyings."); return; }
  const asked = { underlying: state.underlying, expiry: state.expiry };
  let data;
  try {
    data = await api.get(`/option-chain${qs(asked)}`);
  } catch (err) {
    if (asked.expiry && err.status && err.status < 500) { state.expiry = null; return reloadChain(); } // expired: nearest
    toast(`option chain: ${err.message}`);
    return;
  }
  if (asked.underlying !== state.underlying) return; // the trader moved on
  state.expiry = data.expiry;
  const expiry = $("expiry");
  expiry.replaceChildren(...(data.expiries || [data.expiry]).map((e) => el("option", "", e)));
  expiry.value = data.expiry;
  $("lot-size").textContent = data.lot_size ?? "—";
  const sameTokens = chain.chain && chain.chain.underlying === data.underlying && chain.chain.expiry === data.expiry;
  chain.load(data, { recenter: !(keepScroll && sameTokens) });
  strategy.renderLegs();
  await subscribe(chain.tokens());
  if (!sameTokens || ticks.state === "idle") ticks.restart();
}

/** The stream only streams subscribed instruments: subscribe the chain on display (FULL mode). */
async function subscribe(tokens) {
  const missing = tokens.filter((t) => !state.subscribed.has(t));
  if (!missing.length) return;
  try {
    await api.post("/subscriptions/bulk", { instrument_tokens: missing, requested_mode: "FULL" });
  } catch (err) {
    if (err.status !== 404 && err.status !== 405) { toast(`subscriptions: ${err.message}`); return; }
    // No bulk route: one call per token.
    for (const token of missing) {
      try { await api.post("/subscriptions", { instrument_token: token, requested_mode: "FULL" }); }
      catch (e) { toast(`subscribe ${token}: ${e.message}`); return; }
    }
  }
  for (const t of missing) state.subscribed.add(t);
}

$("underlying").addEventListener("change", (e) => {
  state.underlying = e.target.value;
  state.expiry = null;
  store.set("underlying", state.underlying);
  reloadChain();
});
$("expiry").addEventListener("change", (e) => { state.expiry = e.target.value; reloadChain(); });
$("chain-center").addEventListener("click", () => chain.centerAtm());

// ---- orders -------------------------------------------------------------------
let deadTimer = 0;
const blotter = new Blotter({
  api, body: $("blotter-body"), count: $("orders-count"), toast,
  onOrder: (order, previous) => {
    strategy.orderUpdated(order);
    if (order.status === "DEAD_LETTER" && previous !== "DEAD_LETTER") {
      clearTimeout(deadTimer);
      deadTimer = setTimeout(() => deadLetters.load(), 300);
    }
  },
  onSeq: (seq) => { $("orders-seq").textContent = seq != null ? `#${seq}` : ""; },
});
const deadLetters = new DeadLetters({
  api, body: $("dead-body"), empty: $("dead-empty"), count: $("dead-count"), toast,
  onReplay: (order) => blotter.merge(order),
});
const orders = new LiveSocket(
  () => (state.key && state.account ? wsUrl(`/ws/orders/${encodeURIComponent(state.account)}`, { api_key: state.key }) : null),
  {
    onMessage: (message) => {
      blotter.handle(message); // session messages share the account's seq
      if (message.type === "session") accounts.sessionMessage(message);
      if (message.type === "kill_switch" || message.type === "halt") accounts.haltMessage(message);
    },
    onOpen: () => {
      deadLetters.load();
      if (orders.openedBefore) accounts.refresh(); // a session may have changed while the socket was down
      orders.openedBefore = true;
    },
    onState: (s, detail) => showState("orders-state", s, detail),
  },
);
$("orders-refresh").addEventListener("click", () => blotter.resync());
$("dead-refresh").addEventListener("click", () => deadLetters.load());

// ---- accounts and their Kite sessions ----------------------------------------------
const accounts = new AccountsPanel({
  api, toast,
  dom: { body: $("accounts-body"), empty: $("accounts-empty"), count: $("accounts-count"), note: $("accounts-note") },
  onSession: (account) => { if (account === state.account) strategy.sessionChanged(); },
  onPick: (account) => { if (account !== state.account) selectAccount(account); },
});
$("accounts-refresh").addEventListener("click", () => accounts.refresh());

async function loadAccounts() {
  const list = await accounts.load();
  const ids = list.map((a) => a.account_id);
  const select = $("account");
  select.replaceChildren(...ids.map((id) => el("option", "", id)));
  const saved = store.get("account");
  selectAccount(ids.includes(saved) ? saved : ids[0] || null);
  if (!ids.length) toast("this key sees no accounts", "info");
}

function selectAccount(account) {
  state.account = account;
  $("account").value = account || "";
  if (account) store.set("account", account);
  accounts.select(account);
  blotter.reset(account);
  deadLetters.account = account;
  strategy.accountChanged();
  if (account) orders.restart(); else orders.stop();
}
$("account").addEventListener("change", (e) => selectAccount(e.target.value));

// ---- strategy -------------------------------------------------------------------
const strategy = new StrategyBuilder({
  api, chain, toast,
  account: () => state.account,
  orderRecord: (id) => blotter.orders.get(id),
  session: () => accounts.sessionOf(state.account),
  login: (account, button) => accounts.login(account, button),
  onRefused: (details, account) => {
    if (details.session) accounts.applySession(details.account_id || account, details.session);
    accounts.scheduleRefresh();
  },
  dom: {
    presets: $("presets"), clear: $("legs-clear"), orderType: $("order-type"), product: $("product"),
    side: $("preset-side"), width: $("preset-width"), lots: $("preset-lots"),
    legsBody: $("legs-body"), legsEmpty: $("legs-empty"), legsTable: $("legs-body").closest("table"),
    premium: $("net-premium"), delta: $("net-delta"), gamma: $("net-gamma"), theta: $("net-theta"), vega: $("net-vega"),
    totals: $("totals"), submit: $("submit-batch"), sessionNote: $("ticket-session"),
    batch: $("batch"), batchId: $("batch-id"), batchStatus: $("batch-status"), batchLegs: $("batch-legs"),
    rollbackWrap: $("batch-rollback-wrap"), rollback: $("batch-rollback"),
  },
});

// ---- key ------------------------------------------------------------------------
async function connect() {
  ticks.stop();
  orders.stop();
  state.subscribed.clear();
  if (!state.key) { accounts.clear(); chain.clear("Enter an API key to load the chain."); return; }
  try {
    await loadAccounts();
  } catch (err) {
    accounts.clear();
    chain.clear(err.status === 401 ? "That API key was refused." : `Cannot load: ${err.message}`);
    toast(err.status === 401 ? "API key refused" : err.message);
    return;
  }
  confirmLogin();
  try {
    await loadUnderlyings();
  } catch (err) {
    chain.clear(`Cannot load: ${err.message}`);
    toast(err.message);
    return;
  }
  await reloadChain();
}

/** Back from Kite's login (the callback sends the browser to /dashboard?logged_in=ACCOUNT): say
 *  so once, and take the parameter out of the address so a reload does not say it again. */
let loginChecked = false;
function confirmLogin() {
  if (loginChecked) return;
  loginChecked = true;
  const params = new URLSearchParams(location.search);
  const loggedIn = params.get("logged_in");
  accounts.confirmLogin(loggedIn);
  if (params.has("logged_in")) {
    params.delete("logged_in");
    const search = params.toString();
    history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
  }
}

$("api-key").value = state.key;
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  store.set("apiKey", state.key || null);
  connect();
});
$("key-forget").addEventListener("click", () => {
  state.key = "";
  $("api-key").value = "";
  store.set("apiKey", null);
  store.set("account", null);
  selectAccount(null);
  connect();
});

// Read-only handles for debugging from the console.
window.dashboard = { chain, blotter, strategy, ticks, orders, accounts };
connect();
