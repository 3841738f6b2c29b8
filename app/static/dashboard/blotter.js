// The order blotter: a snapshot then live updates from /ws/orders/{account},
// rows updated in place, a brief highlight on every status change, cancel for
// working orders; and the dead-letter list with replay.

import { qs } from "./api.js";
import { el, num, time } from "./format.js";

export const FINAL = new Set(["COMPLETE", "CANCELLED", "REJECTED", "DEAD_LETTER", "EXPIRED"]);
const MAX_ROWS = 400;
const LATE_WAIT_MS = 500; // how long a skipped seq may take to arrive before we refetch
const MAX_LATE = 50; // a bigger jump is a loss: refetch at once

function stamp(iso) {
  const t = Date.parse(iso || "");
  return Number.isNaN(t) ? 0 : t;
}

function statusBadge(status) {
  const span = el("span", "status", status || "—");
  span.dataset.s = status || "";
  return span;
}

export class Blotter {
  constructor({ api, body, count, toast, onOrder, onSeq }) {
    this.api = api;
    this.body = body;
    this.count = count;
    this.toast = toast;
    this.onOrder = onOrder || (() => {});
    this.onSeq = onSeq || (() => {});
    this.account = null;
    this.reset(null);
  }

  reset(account) {
    this.account = account;
    this.orders = new Map();
    this.rows = new Map();
    this.seq = null;
    this.resyncing = null;
    this.snapshots = 0;
    this.missing = new Set(); // seqs skipped over, maybe only late
    clearTimeout(this.gapTimer);
    this.body.replaceChildren();
    this.count.textContent = "";
  }

  /** A message of the order socket. */
  handle(message) {
    if (message.account_id && this.account && message.account_id !== this.account && message.account_id !== "*") return;
    if (message.type === "snapshot") {
      this.snapshots += 1;
      this.seq = typeof message.seq === "number" ? message.seq : null;
      this.missing.clear();
      for (const order of message.orders || []) this.merge(order);
      this.onSeq(this.seq);
      // The snapshot holds working orders only; fetch the recent finished ones too.
      this.resync();
    } else if (["order_update", "session", "kill_switch", "halt"].includes(message.type)) {
      // A session message (the account's Kite session expired, or a login) and a kill switch's or a
      // resume's are numbered in the same sequence as the order updates: they count for gaps, and carry
      // no order.
      const isOrder = message.type === "order_update";
      const seq = message.seq;
      if (typeof seq === "number" && this.seq !== null) {
        if (seq <= this.seq) {
          // Workers publish concurrently, so a lower seq may come late: take it if it was missing.
          if (this.missing.delete(seq) && isOrder && message.data) this.merge(message.data);
          return;
        }
        if (seq > this.seq + 1) this.noteGap(this.seq + 1, seq - 1);
      }
      if (typeof seq === "number") this.seq = seq;
      this.onSeq(this.seq);
      if (isOrder && message.data) this.merge(message.data);
    } else if (message.type === "resync") {
      this.resync();
    }
  }

  /** Updates first..last did not arrive: wait a moment for late ones, then refetch. */
  noteGap(first, last) {
    if (last - first >= MAX_LATE) {
      this.missing.clear();
      this.toast(`order updates ${first}–${last} missed: resyncing`, "info");
      this.resync();
      return;
    }
    for (let s = first; s <= last; s++) this.missing.add(s);
    clearTimeout(this.gapTimer);
    this.gapTimer = setTimeout(() => {
      if (!this.missing.size) return;
      const seqs = [...this.missing].sort((a, b) => a - b);
      this.missing.clear();
      this.toast(`order update${seqs.length > 1 ? "s" : ""} ${seqs.join(", ")} missed: resyncing`, "info");
      this.resync();
    }, LATE_WAIT_MS);
  }

  /** Refetch the account's recent orders (after a snapshot, a seq gap, or on demand). */
  resync() {
    if (!this.account) return Promise.resolve();
    if (this.resyncing) return this.resyncing;
    const account = this.account;
    this.resyncing = this.api.get(`/accounts/${encodeURIComponent(account)}/orders${qs({ limit: 200 })}`)
      .then((page) => {
        if (account !== this.account) return;
        const orders = Array.isArray(page) ? page : page.orders || [];
        for (const order of orders.slice().reverse()) this.merge(order);
      })
      .catch((err) => this.toast(`orders: ${err.message}`))
      .finally(() => { this.resyncing = null; });
    return this.resyncing;
  }

  merge(order) {
    const id = order.id || order.order_id;
    if (!id || (this.account && order.account_id && order.account_id !== this.account)) return;
    const known = this.orders.get(id);
    if (known && stamp(known.updated_at) > stamp(order.updated_at)) return; // stale (a late REST page)
    const record = known ? { ...known, ...order } : { ...order };
    delete record.events;
    this.orders.set(id, record);
    this.render(id, record, known ? known.status : null);
    this.onOrder(record, known ? known.status : null);
  }

  render(id, o, previousStatus) {
    let row = this.rows.get(id);
    if (!row) {
      row = this.createRow(id, o);
      this.rows.set(id, row);
      this.place(row.tr, o);
      this.trim();
    }
    const c = row.cells;
    c.time.textContent = time(o.created_at);
    c.time.title = `created ${o.created_at || "?"}; updated ${o.updated_at || "?"}`;
    c.sym.textContent = o.tradingsymbol || "—";
    c.sym.title = `${o.exchange || ""}:${o.tradingsymbol || ""}  order ${id}${o.broker_order_id ? "  broker " + o.broker_order_id : ""}`;
    c.side.textContent = o.transaction_type || "";
    c.side.className = o.transaction_type || "";
    c.qty.textContent = o.quantity ?? "—";
    c.type.textContent = `${o.order_type || ""} ${o.product || ""}`.trim();
    c.price.textContent = o.price ? num(o.price) : "—";
    c.status.replaceChildren(statusBadge(o.status));
    c.filled.textContent = `${o.filled_quantity ?? 0}/${o.quantity ?? "?"}`;
    c.avg.textContent = o.average_price ? num(o.average_price) : "—";
    c.batch.textContent = o.batch_id ? `${o.role || "leg"}${o.leg_index != null ? " " + (o.leg_index + 1) : ""}` : "";
    c.batch.className = `batch role-${o.role || "order"}`;
    c.batch.title = o.batch_id ? `batch ${o.batch_id}` : "";
    c.attempts.textContent = o.attempts ?? "";
    const message = o.error || o.status_message || "";
    c.msg.textContent = message;
    c.msg.title = message;
    row.tr.dataset.status = o.status || "";
    row.tr.dataset.batchId = o.batch_id || "";
    row.tr.dataset.role = o.role || "";
    row.tr.dataset.symbol = o.tradingsymbol || "";
    c.cancel.hidden = FINAL.has(o.status);
    if (previousStatus && previousStatus !== o.status) this.flash(row.tr);
    this.count.textContent = `${this.orders.size} orders`;
  }

  createRow(id, o) {
    const tr = el("tr");
    tr.dataset.orderId = id;
    const cells = {};
    for (const name of ["time", "sym", "side", "qty", "type", "price", "status", "filled", "avg", "batch", "attempts", "msg"]) {
      cells[name] = el("td", name);
      tr.append(cells[name]);
    }
    const action = el("td");
    const cancel = el("button", "cancel", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => this.cancel(id, cancel));
    action.append(cancel);
    tr.append(action);
    cells.cancel = cancel;
    this.flash(tr);
    return { tr, cells };
  }

  place(tr, o) {
    // Newest first: before the first row created earlier than this order.
    const at = stamp(o.created_at);
    for (const other of this.body.children) {
      const known = this.orders.get(other.dataset.orderId);
      if (known && stamp(known.created_at) < at) { this.body.insertBefore(tr, other); return; }
    }
    this.body.append(tr);
  }

  trim() {
    while (this.body.children.length > MAX_ROWS) {
      const last = this.body.lastElementChild;
      this.rows.delete(last.dataset.orderId);
      this.orders.delete(last.dataset.orderId);
      last.remove();
    }
  }

  flash(tr) {
    tr.classList.remove("changed");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("changed");
  }

  async cancel(id, button) {
    button.disabled = true;
    try {
      const order = await this.api.del(`/orders/${encodeURIComponent(id)}`);
      if (order && (order.id || order.order_id)) this.merge(order);
    } catch (err) {
      this.toast(`cancel ${id}: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }
}

export class DeadLetters {
  constructor({ api, body, empty, count, toast, onReplay }) {
    this.api = api;
    this.body = body;
    this.empty = empty;
    this.count = count;
    this.toast = toast;
    this.onReplay = onReplay || (() => {});
    this.account = null;
    this.loading = null;
  }

  async load(account = this.account) {
    this.account = account;
    if (!account) { this.body.replaceChildren(); return; }
    try {
      const page = await this.api.get(`/orders/dead-letter${qs({ account_id: account, limit: 100 })}`);
      if (account !== this.account) return;
      this.render(Array.isArray(page) ? page : page.orders || []);
    } catch (err) {
      this.toast(`dead letters: ${err.message}`);
    }
  }

  render(orders) {
    const fragment = document.createDocumentFragment();
    for (const o of orders) {
      const id = o.id || o.order_id;
      const tr = el("tr");
      tr.dataset.orderId = id;
      tr.append(el("td", "", time(o.updated_at || o.created_at)));
      const sym = el("td", "sym", o.tradingsymbol);
      sym.title = `order ${id}`;
      tr.append(sym, el("td", o.transaction_type, o.transaction_type), el("td", "", o.quantity));
      const reason = el("td", "msg", o.error || o.status_message || "");
      reason.title = o.error || "";
      tr.append(reason);
      const action = el("td");
      const replay = el("button", "replay", "Replay");
      replay.type = "button";
      replay.addEventListener("click", async () => {
        replay.disabled = true;
        try {
          const order = await this.api.post(`/orders/${encodeURIComponent(id)}/replay`);
          this.toast(`replaying ${o.tradingsymbol}`, "info");
          this.onReplay(order);
          await this.load();
        } catch (err) {
          this.toast(`replay ${id}: ${err.message}`);
          replay.disabled = false;
        }
      });
      action.append(replay);
      tr.append(action);
      fragment.append(tr);
    }
    this.body.replaceChildren(fragment);
    this.empty.hidden = orders.length > 0;
    this.count.textContent = orders.length ? `${orders.length}` : "";
  }
}
