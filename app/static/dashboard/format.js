// Number and time formatting for dense tables.

const cache = new Map();
function fmt(digits) {
  let f = cache.get(digits);
  if (!f) {
    f = new Intl.NumberFormat("en-IN", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    cache.set(digits, f);
  }
  return f;
}

export function num(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : fmt(digits).format(value);
}

export function signed(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (Math.abs(value) < 0.5 * 10 ** -digits) return fmt(digits).format(0); // no "-0.00"
  const text = fmt(digits).format(value);
  return value > 0 ? `+${text}` : text;
}

const compact = new Intl.NumberFormat("en-IN", { notation: "compact", maximumFractionDigits: 1 });
export function big(value) {
  return value === null || value === undefined ? "—" : compact.format(value);
}

export function pct(value, digits = 1) {
  return value === null || value === undefined ? "—" : `${fmt(digits).format(value * 100)}`;
}

export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "—" : d.toLocaleTimeString("en-GB", { hour12: false });
}

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

/** A moment as a time of day, with the date when it is not today (local time). */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "—";
  const clock = d.toLocaleTimeString("en-GB", { hour12: false });
  if (d.toDateString() === new Date().toDateString()) return clock;
  return `${d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" })} ${clock}`;
}

/** Seconds as h:mm:ss (a countdown). */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}
