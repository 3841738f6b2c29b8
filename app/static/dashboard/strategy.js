// Strategy builder: legs picked from the chain or from presets, net premium and
// Greeks of the basket from the live chain, submitted as one batch with rollback,
// then watched until every leg (and any rollback action) has settled. An account whose
// Kite session is not active cannot submit: the ticket says why, with the login button.

import { ACTIVE, cannotTrade } from "./accounts.js";
import { el, num, signed } from "./format.js";

export const FINAL_BATCH = new Set(["COMPLETED", "PARTIAL", "ROLLED_BACK", "ROLLBACK_FAILED"]);
const MAX_LEGS = 10; // the batch API takes 1-10 legs
const POLL_MS = 600;
const POLL_LIMIT_MS = 120000;

let nextLegId = 1;

function errorCell(error) {
  const td = el("td", "err", error || "");
  if (error) td.title = error;
  return td;
}

function roundTick(price, tick = 0.05) {
  return Math.max(tick, Math.round(price / tick) * tick);
}

export class StrategyBuilder {
  constructor({ api, chain, dom, toast, account, orderRecord, session, login, onRefused }) {
    this.api = api;
    this.chain = chain;
    this.dom = dom;
    this.toast = toast;
    this.account = account; // () => account id
    this.orderRecord = orderRecord; // (order id) => blotter record or undefined
    this.session = session || (() => null); // () => the account's session view (null: not known)
    this.login = login || (() => {}); // (account id, button) => off to Kite's login page
    this.onRefused = onRefused || (() => {}); // (409 details, account id): the service said the session is dead
    this.refused = null; // {account, message, at}: a 409 session_expired, until the session is active again
    this.noteKey = null;
    this.legs = [];
    this.batch = null;
    this.pollTimer = null;
    this.submitting = false;
    dom.presets.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-preset]");
      if (button) this.preset(button.dataset.preset);
    });
    dom.clear.addEventListener("click", () => { this.legs = []; this.renderLegs(); });
    dom.orderType.addEventListener("change", () => this.renderLegs());
    dom.submit.addEventListener("click", () => this.submit());
  }

  lotSize(entry) {
    return entry?.quote?.lot_size || this.chain.chain?.lot_size || 1;
  }

  /** Add a leg from a chain click; the same option and side again adds a lot. */
  add(entry, side, lots = 1, render = true) {
    const token = entry.quote.instrument_token;
    const same = this.legs.find((l) => l.token === token && l.side === side);
    if (same) {
      same.lots += lots;
    } else {
      if (this.legs.length >= MAX_LEGS) { this.toast(`a basket takes at most ${MAX_LEGS} legs`); return; }
      this.legs.push({
        id: nextLegId++, token, side, lots,
        tradingsymbol: entry.quote.tradingsymbol,
        exchange: entry.quote.exchange || "NFO",
        strike: entry.strike, type: entry.side,
        price: entry.quote.last_price ? roundTick(entry.quote.last_price) : null,
      });
    }
    if (render) this.renderLegs();
  }

  preset(name) {
    const chain = this.chain;
    const strikes = chain.strikes();
    if (!strikes.length || chain.atm === null) { this.toast("load a chain with a spot price first"); return; }
    const atmIndex = strikes.indexOf(chain.atm);
    const w = Math.max(1, parseInt(this.dom.width.value, 10) || 1);
    const lots = Math.max(1, parseInt(this.dom.lots.value, 10) || 1);
    const short = this.dom.side.value === "short";
    const S = short ? "SELL" : "BUY";
    const B = short ? "BUY" : "SELL";
    // [strike offset from ATM, CE/PE, side]; long wings before short bodies (margin).
    const plans = {
      straddle: [[0, "CE", S], [0, "PE", S]],
      strangle: [[w, "CE", S], [-w, "PE", S]],
      bull_call_spread: [[0, "CE", "BUY"], [w, "CE", "SELL"]],
      iron_condor: [[-2 * w, "PE", B], [2 * w, "CE", B], [-w, "PE", S], [w, "CE", S]],
    };
    const plan = plans[name];
    if (!plan) return;
    const picked = [];
    for (const [offset, type, side] of plan) {
      const strike = strikes[atmIndex + offset];
      const entry = strike !== undefined ? chain.quoteAt(strike, type) : null;
      if (!entry) { this.toast(`${name.replace(/_/g, " ")}: no ${type} ${offset >= 0 ? "+" : ""}${offset} strikes from ATM`); return; }
      picked.push([entry, side]);
    }
    this.legs = [];
    for (const [entry, side] of picked) this.add(entry, side, lots, false);
    this.renderLegs();
  }

  renderLegs() {
    const { legsBody, legsEmpty, legsTable, orderType } = this.dom;
    const limit = orderType.value === "LIMIT";
    legsTable.classList.toggle("limit", limit);
    const fragment = document.createDocumentFragment();
    for (const leg of this.legs) {
      const tr = el("tr");
      tr.dataset.legId = String(leg.id);
      tr.dataset.symbol = leg.tradingsymbol;
      const sideButton = el("button", `side ${leg.side}`, leg.side);
      sideButton.type = "button";
      sideButton.title = "Switch buy/sell";
      sideButton.addEventListener("click", () => { leg.side = leg.side === "BUY" ? "SELL" : "BUY"; this.renderLegs(); });
      const sideCell = el("td");
      sideCell.append(sideButton);
      const lots = el("input");
      lots.type = "number"; lots.min = "1"; lots.max = "500"; lots.value = String(leg.lots);
      lots.addEventListener("input", () => { leg.lots = Math.max(1, parseInt(lots.value, 10) || 1); this.refresh(); });
      const lotsCell = el("td");
      lotsCell.append(lots);
      const price = el("input", "price");
      price.type = "number"; price.step = "0.05"; price.min = "0.05";
      price.value = leg.price != null ? leg.price.toFixed(2) : "";
      price.addEventListener("input", () => { leg.price = parseFloat(price.value) || null; });
      const priceCell = el("td", "price-col");
      priceCell.append(price);
      const remove = el("button", "remove", "×");
      remove.type = "button";
      remove.title = "Remove leg";
      remove.addEventListener("click", () => { this.legs = this.legs.filter((l) => l !== leg); this.renderLegs(); });
      const removeCell = el("td");
      removeCell.append(remove);
      leg.cells = { qty: el("td", "qty"), ltp: el("td", "ltp"), delta: el("td", "delta") };
      tr.append(sideCell, el("td", "sym", leg.tradingsymbol), lotsCell, leg.cells.qty, leg.cells.ltp, priceCell,
        leg.cells.delta, removeCell);
      fragment.append(tr);
    }
    legsBody.replaceChildren(fragment);
    legsEmpty.hidden = this.legs.length > 0;
    this.chain.markPicked(new Set(this.legs.map((l) => l.token)));
    this.refresh();
  }

  /** Live figures: per-leg LTP and delta, and the basket's net premium and Greeks. */
  refresh() {
    const totals = { premium: 0, delta: 0, gamma: 0, theta: 0, vega: 0 };
    let complete = this.legs.length > 0;
    for (const leg of this.legs) {
      const entry = this.chain.entry(leg.token);
      const q = entry ? entry.quote : {};
      const qty = leg.lots * this.lotSize(entry);
      const sign = leg.side === "BUY" ? 1 : -1;
      if (leg.cells) {
        leg.cells.qty.textContent = String(qty);
        leg.cells.ltp.textContent = num(q.last_price);
        leg.cells.delta.textContent = num(q.delta, 3);
      }
      if (q.last_price == null) complete = false;
      else totals.premium += -sign * q.last_price * qty; // selling takes premium in
      for (const g of ["delta", "gamma", "theta", "vega"]) {
        if (q[g] == null) complete = false;
        else totals[g] += sign * q[g] * qty;
      }
    }
    const d = this.dom;
    const set = (node, value, digits, text) => {
      node.textContent = this.legs.length ? text ?? signed(value, digits) : "—";
      node.classList.toggle("pos", this.legs.length > 0 && value > 0);
      node.classList.toggle("neg", this.legs.length > 0 && value < 0);
    };
    const premiumText = `${signed(totals.premium, 2)} ${totals.premium >= 0 ? "credit" : "debit"}`;
    set(d.premium, totals.premium, 2, premiumText);
    set(d.delta, totals.delta, 2);
    set(d.gamma, totals.gamma, 4);
    set(d.theta, totals.theta, 2);
    set(d.vega, totals.vega, 2);
    d.totals.title = complete ? "" : "some legs have no live price or Greeks yet";
    const blocked = this.blocked();
    d.submit.disabled = this.submitting || !this.legs.length || !this.account() || blocked !== null;
    this.renderSessionNote(blocked);
  }

  /** Why the selected account cannot trade now (null: it can, as far as the page knows). */
  blocked() {
    const account = this.account();
    const view = this.session();
    const refused = this.refused;
    if (refused && refused.account === account) {
      // Until the service shows the session active again (a view received after the refusal).
      if (!(view && view.state === ACTIVE && view.receivedAt > refused.at)) return refused.message;
      this.refused = null;
    }
    return cannotTrade(account, view);
  }

  renderSessionNote(blocked) {
    const note = this.dom.sessionNote;
    const account = this.account();
    const key = blocked === null ? null : `${account}|${blocked}`;
    if (key === this.noteKey) return; // refresh() runs on every tick frame: rebuild only on a change
    this.noteKey = key;
    note.hidden = blocked === null;
    if (blocked === null) { note.replaceChildren(); return; }
    const text = el("span", "why", blocked);
    text.title = blocked;
    const login = el("button", "login urgent", "Log in to Kite");
    login.type = "button";
    login.addEventListener("click", () => this.login(account, login));
    note.replaceChildren(text, login);
  }

  /** The selected account's session changed (or was read again). */
  sessionChanged() {
    this.refresh();
  }

  async submit() {
    const account = this.account();
    if (!account || !this.legs.length || this.blocked() !== null) return;
    const orderType = this.dom.orderType.value;
    const product = this.dom.product.value;
    const legs = this.legs.map((leg) => {
      const order = {
        exchange: leg.exchange, tradingsymbol: leg.tradingsymbol, transaction_type: leg.side,
        quantity: leg.lots * this.lotSize(this.chain.entry(leg.token)), product, order_type: orderType,
      };
      if (orderType === "LIMIT") order.price = leg.price;
      return order;
    });
    if (orderType === "LIMIT" && legs.some((l) => !l.price)) { this.toast("every LIMIT leg needs a price"); return; }
    this.submitting = true;
    this.refresh();
    try {
      const batch = await this.api.post(`/accounts/${encodeURIComponent(account)}/batch-orders`,
        { legs, rollback_on_failure: true, wait: 0 });
      this.watch(batch, legs);
    } catch (err) {
      if (err.status === 409 && err.code === "session_expired") {
        this.refused = { account, message: err.plain, at: Date.now() };
        this.onRefused(err.details || {}, account);
        this.toast(`batch refused: ${err.plain}`);
      } else {
        this.toast(`batch refused: ${err.message}`);
      }
    } finally {
      this.submitting = false;
      this.refresh();
    }
  }

  watch(batch, submittedLegs) {
    clearTimeout(this.pollTimer);
    this.batch = { ...batch, submittedLegs, startedAt: Date.now() };
    this.renderBatch();
    this.poll();
  }

  poll() {
    const batch = this.batch;
    if (!batch || FINAL_BATCH.has(batch.status)) return;
    if (Date.now() - batch.startedAt > POLL_LIMIT_MS) { this.toast(`batch ${batch.batch_id} still ${batch.status}; stopped watching`); return; }
    this.pollTimer = setTimeout(async () => {
      try {
        const fresh = await this.api.get(`/batches/${encodeURIComponent(batch.batch_id)}`);
        if (this.batch !== batch) return;
        Object.assign(batch, fresh);
        this.renderBatch();
        if (FINAL_BATCH.has(batch.status)) {
          const note = batch.status === "COMPLETED" ? "info" : undefined;
          this.toast(`batch ${batch.status.toLowerCase().replace("_", " ")}: ${batch.succeeded ?? "?"}/${batch.total_orders ?? "?"} legs`, note);
          return;
        }
      } catch (err) {
        this.toast(`batch ${batch.batch_id}: ${err.message}`);
      }
      this.poll();
    }, POLL_MS);
  }

  /** An order update from the socket: a leg of the watched batch settles in place. */
  orderUpdated(order) {
    const batch = this.batch;
    if (!batch || order.batch_id !== batch.batch_id) return;
    const leg = (batch.legs || []).find((l) => l.order_id === (order.id || order.order_id));
    if (leg) {
      leg.status = order.status;
      leg.filled_quantity = order.filled_quantity;
      leg.broker_order_id = order.broker_order_id;
      leg.error = order.error || leg.error;
      this.renderBatch();
    }
  }

  symbolOf(orderId, index) {
    const record = this.orderRecord(orderId);
    if (record?.tradingsymbol) return record.tradingsymbol;
    return this.batch?.submittedLegs?.[index]?.tradingsymbol || orderId || "?";
  }

  renderBatch() {
    const b = this.batch;
    const d = this.dom;
    d.batch.hidden = !b;
    if (!b) return;
    d.batchId.textContent = b.batch_id;
    d.batchStatus.textContent = b.status;
    d.batchStatus.dataset.s = b.status;
    d.batch.dataset.status = b.status;
    const rows = (b.legs || []).map((leg, i) => {
      const tr = el("tr");
      tr.dataset.orderId = leg.order_id || "";
      tr.dataset.status = leg.status || "";
      const status = el("span", "status", leg.status || "—");
      status.dataset.s = leg.status || "";
      const statusCell = el("td");
      statusCell.append(status);
      const side = b.submittedLegs?.[i]?.transaction_type || "";
      tr.append(el("td", "", String(i + 1)), el("td", "", `${side} ${this.symbolOf(leg.order_id, i)}`.trim()), statusCell,
        el("td", "", leg.filled_quantity ?? "—"), errorCell(leg.error));
      return tr;
    });
    d.batchLegs.replaceChildren(...rows);
    const actions = b.rollback || [];
    d.rollbackWrap.hidden = actions.length === 0;
    d.rollback.replaceChildren(...actions.map((a) => {
      const index = (b.legs || []).findIndex((l) => l.order_id === a.leg_order_id);
      const li = el("li", a.error ? "failed" : "",
        `${a.action} ${this.symbolOf(a.leg_order_id, index)} → ${a.result || "pending"}${a.error ? ` (${a.error})` : ""}`);
      li.title = li.textContent;
      li.dataset.action = a.action || "";
      li.dataset.result = a.result || "";
      return li;
    }));
  }

  accountChanged() {
    clearTimeout(this.pollTimer);
    this.refused = null;
    this.batch = null;
    this.renderBatch();
    this.refresh();
  }
}
