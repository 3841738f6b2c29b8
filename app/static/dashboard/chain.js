// The option chain table. Rows are built once per chain load; ticks only touch
// the cells whose text changed, once per animation frame (requestAnimationFrame),
// however many ticks arrived since the last frame.

import { big, el, num, signed } from "./format.js";

const CE_FIELDS = ["oi", "iv", "vega", "theta", "gamma", "delta", "change", "last_price"];
const PE_FIELDS = ["last_price", "change", "delta", "gamma", "theta", "vega", "iv", "oi"];
export const GREEKS = ["iv", "delta", "gamma", "theta", "vega", "rho"];

function ivText(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  return num(v <= 5 ? v * 100 : v, 2); // the stream gives sigma as a fraction
}

const FORMAT = {
  last_price: (v) => num(v, 2),
  change: (v) => signed(v, 2),
  oi: big,
  iv: ivText,
  delta: (v) => num(v, 3),
  gamma: (v) => num(v, 5),
  theta: (v) => num(v, 2),
  vega: (v) => num(v, 2),
};

export class OptionChain {
  constructor({ body, wrap, empty, onPick, onChange, onSpot }) {
    this.body = body;
    this.wrap = wrap;
    this.empty = empty;
    this.onPick = onPick;
    this.onChange = onChange;
    this.onSpot = onSpot;
    this.chain = null;
    this.rows = new Map(); // strike -> {tr}
    this.byToken = new Map(); // option token -> entry {side, strike, quote, cells, tr}
    this.pending = new Map(); // token -> newest tick since the last frame
    this.frame = 0;
    this.spot = null; // {instrument_token, last_price, ...}
    this.future = null;
    this.atm = null;
    this.centerPending = false; // a new chain opens at ATM, which may only be known from the first spot tick
    this.ticksApplied = 0;
    this.flushes = 0;
    body.addEventListener("click", (event) => this.pick(event, "BUY"));
    body.addEventListener("contextmenu", (event) => this.pick(event, "SELL"));
    // Once the trader scrolls or clicks in the chain, the chain stays where they put it.
    for (const type of ["wheel", "touchstart", "pointerdown", "keydown"]) {
      wrap.addEventListener(type, () => { this.centerPending = false; }, { passive: true });
    }
  }

  pick(event, side) {
    const cell = event.target.closest("td.ltp");
    if (!cell) return;
    event.preventDefault();
    const entry = this.byToken.get(Number(cell.dataset.token));
    if (entry) this.onPick(entry, side);
  }

  tokens() {
    const tokens = [...this.byToken.keys()];
    if (this.spot) tokens.push(this.spot.instrument_token);
    if (this.future) tokens.push(this.future.instrument_token);
    return tokens;
  }

  /**
   * Replace the table with a freshly fetched chain (the only full render).
   * `recenter`: a new chain (first load, another underlying or expiry) opens at ATM;
   * a reload of the same one (socket reconnect) keeps the trader's place.
   */
  load(chain, { recenter = true } = {}) {
    const scroll = this.wrap.scrollTop;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending.clear();
    this.chain = chain;
    this.rows.clear();
    this.byToken.clear();
    this.spot = chain.spot ? { ...chain.spot } : null;
    this.future = chain.future ? { ...chain.future } : null;
    this.atm = null;
    this.bucket = undefined;
    const fragment = document.createDocumentFragment();
    for (const row of chain.strikes) {
      const tr = el("tr");
      tr.dataset.strike = String(row.strike);
      const sides = {};
      for (const side of ["CE", "PE"]) {
        const quote = row[side];
        const fields = side === "CE" ? CE_FIELDS : PE_FIELDS;
        const cells = {};
        const make = () => {
          for (const f of fields) {
            const td = el("td", `${side.toLowerCase()} f-${f}${f === "last_price" ? " ltp" : ""}`);
            td.dataset.f = f;
            if (quote) {
              td.dataset.side = side;
              if (f === "last_price") {
                td.dataset.token = String(quote.instrument_token);
                td.title = `${quote.tradingsymbol}: click buy, right-click sell`;
              }
            }
            cells[f] = td;
            tr.append(td);
          }
        };
        if (side === "PE") {
          const strike = el("td", "strike", num(row.strike, row.strike % 1 ? 2 : 0));
          tr.append(strike);
        }
        make();
        sides[side] = cells;
        if (quote) {
          const entry = { side, strike: row.strike, quote: { ...quote }, cells, tr, shown: {} };
          this.byToken.set(quote.instrument_token, entry);
          this.paint(entry);
        } else {
          for (const td of Object.values(cells)) td.textContent = "";
        }
      }
      this.rows.set(row.strike, { tr });
      fragment.append(tr);
    }
    this.body.replaceChildren(fragment);
    this.empty.hidden = chain.strikes.length > 0;
    if (!chain.strikes.length) this.empty.textContent = "No strikes in this chain.";
    if (recenter) this.centerPending = true; else this.wrap.scrollTop = scroll;
    this.updateMoneyness(chain.atm_strike);
    this.followAtm();
    this.onSpot(this.spot, this.future);
    this.onChange();
  }

  clear(message) {
    this.chain = null;
    this.rows.clear();
    this.byToken.clear();
    this.pending.clear();
    this.body.replaceChildren();
    this.empty.hidden = false;
    this.empty.textContent = message;
  }

  /** A tick batch from /ws/ticks: remember the newest tick per token, paint on the next frame. */
  ingest(message) {
    if (!this.chain || !Array.isArray(message.ticks)) return;
    for (const tick of message.ticks) {
      const token = tick.instrument_token;
      if (this.byToken.has(token) || token === this.spot?.instrument_token || token === this.future?.instrument_token) {
        this.pending.set(token, tick);
      }
    }
    if (this.pending.size && !this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    this.flushes += 1;
    let spotMoved = false;
    for (const [token, tick] of this.pending) {
      const entry = this.byToken.get(token);
      if (entry) {
        const q = entry.quote;
        if (tick.last_price !== undefined) q.last_price = tick.last_price;
        if (tick.change !== undefined) q.change = tick.change;
        if (tick.oi !== undefined) q.oi = tick.oi;
        if (tick.volume_traded !== undefined) q.volume = tick.volume_traded;
        if (tick.greeks) for (const g of GREEKS) if (g in tick.greeks) q[g] = tick.greeks[g];
        this.paint(entry);
      } else if (token === this.spot?.instrument_token) {
        this.spot.last_price = tick.last_price;
        this.spot.change = tick.change;
        spotMoved = true;
      } else if (token === this.future?.instrument_token) {
        this.future.last_price = tick.last_price;
        this.future.change = tick.change;
        spotMoved = true;
      }
      this.ticksApplied += 1;
    }
    this.pending.clear();
    if (spotMoved) {
      this.updateMoneyness();
      this.followAtm();
      this.onSpot(this.spot, this.future);
    }
    this.onChange();
  }

  paint(entry) {
    const { quote, cells, shown } = entry;
    for (const f in cells) {
      const value = quote[f];
      const text = FORMAT[f](value);
      if (shown[f] === text) continue;
      const td = cells[f];
      if (f === "last_price" && shown.value !== undefined && value !== null) {
        td.classList.toggle("up", value > shown.value);
        td.classList.toggle("down", value < shown.value);
      } else if (f === "change" || f === "delta" || f === "theta") {
        td.classList.toggle("pos", value > 0);
        td.classList.toggle("neg", value < 0);
      }
      td.textContent = text;
      shown[f] = text;
    }
    shown.value = quote.last_price;
  }

  reference() {
    return this.spot?.last_price ?? this.future?.last_price ?? null;
  }

  /** ATM = the strike nearest the spot (or future); ITM halves shaded. */
  updateMoneyness(atmHint) {
    if (!this.chain) return;
    const ref = this.reference();
    let atm = atmHint ?? null;
    if (ref !== null && this.chain.strikes.length) {
      atm = this.chain.strikes.reduce((best, r) => (Math.abs(r.strike - ref) < Math.abs(best - ref) ? r.strike : best),
        this.chain.strikes[0].strike);
    }
    const pivot = ref ?? atm;
    // Shading only changes when the pivot crosses a strike: count the strikes below it.
    const bucket = pivot === null ? -1 : this.chain.strikes.filter((r) => r.strike < pivot).length;
    if (atm === this.atm && bucket === this.bucket) return;
    const previousAtm = this.atm;
    this.atm = atm;
    this.bucket = bucket;
    if (previousAtm !== atm) {
      if (previousAtm !== null) this.rows.get(previousAtm)?.tr.classList.remove("atm");
      if (atm !== null) this.rows.get(atm)?.tr.classList.add("atm");
    }
    if (pivot === null) return;
    for (const [strike, { tr }] of this.rows) {
      tr.classList.toggle("ce-itm", strike < pivot);
      tr.classList.toggle("pe-itm", strike > pivot);
    }
  }

  /** Centre ATM if the chain is new and the trader has not scrolled it yet (ticks never move it after that). */
  followAtm() {
    if (this.centerPending && this.atm !== null) this.centerAtm();
  }

  /** Scroll the ATM row to the middle of what shows below the sticky header. */
  centerAtm() {
    const row = this.atm !== null ? this.rows.get(this.atm) : null;
    if (!row) return;
    this.centerPending = false;
    const box = this.wrap.getBoundingClientRect();
    const rowBox = row.tr.getBoundingClientRect();
    const head = this.body.parentElement.tHead?.offsetHeight || 0;
    const rowTop = rowBox.top - box.top - this.wrap.clientTop + this.wrap.scrollTop; // in the scrolled content
    this.wrap.scrollTop = Math.max(0, rowTop - head - (this.wrap.clientHeight - head - rowBox.height) / 2);
  }

  /** Quote of the option at `strike` and `side` (CE/PE), or null. */
  quoteAt(strike, side) {
    for (const entry of this.byToken.values()) if (entry.strike === strike && entry.side === side) return entry;
    return null;
  }

  strikes() {
    return this.chain ? this.chain.strikes.map((r) => r.strike) : [];
  }

  entry(token) {
    return this.byToken.get(token) || null;
  }

  markPicked(tokens) {
    for (const [token, entry] of this.byToken) entry.cells.last_price.classList.toggle("picked", tokens.has(token));
  }
}
