// Colours and number formats shared by the map, the charts and the panels.

export const DRIVER_STATUSES = [
  ["available", "Available", "#34d399"],
  ["offered", "Offered", "#fbbf24"],
  ["en_route", "En route to pickup", "#38bdf8"],
  ["on_trip", "On trip", "#a78bfa"],
];
export const DRIVER_COLOR = Object.fromEntries(DRIVER_STATUSES.map(([s, , c]) => [s, c]));

export const RIDE_COLOR = {
  requested: "#fb7185", offered: "#fbbf24", matched: "#38bdf8", driver_arrived: "#22d3ee",
  started: "#a78bfa", completed: "#34d399", cancelled: "#94a3b8", expired: "#f97316",
};
export const RIDE_LABEL = {
  requested: "requested", offered: "offered", matched: "matched", driver_arrived: "driver arrived",
  started: "on trip", completed: "completed", cancelled: "cancelled", expired: "expired",
};
export const OPEN_STATUSES = new Set(["requested", "offered"]);
export const TERMINAL_STATUSES = new Set(["completed", "cancelled", "expired"]);

// Surge: 1.0× is no colour; the scale runs amber → orange → magenta up to the cap.
const SURGE_STOPS = [[1.0, [251, 191, 36]], [1.6, [249, 115, 22]], [2.2, [236, 72, 153]], [3.0, [217, 70, 239]]];
export const SURGE_MAX = 3.0;

export function surgeColor(multiplier) {
  const m = Math.min(Math.max(multiplier, 1), SURGE_MAX);
  for (let i = 1; i < SURGE_STOPS.length; i++) {
    const [m1, c1] = SURGE_STOPS[i];
    const [m0, c0] = SURGE_STOPS[i - 1];
    if (m <= m1) {
      const f = (m - m0) / (m1 - m0);
      const rgb = c0.map((v, k) => Math.round(v + (c1[k] - v) * f));
      return `rgb(${rgb.join(",")})`;
    }
  }
  return `rgb(${SURGE_STOPS.at(-1)[1].join(",")})`;
}

export function surgeOpacity(multiplier) {
  return multiplier <= 1.0 ? 0 : Math.min(0.55, 0.12 + (multiplier - 1) * 0.22);
}

export const SERIES_COLORS = ["#38bdf8", "#a78bfa", "#34d399", "#fbbf24", "#fb7185", "#22d3ee", "#f472b6", "#a3e635"];

export const fmt = {
  int: (v) => (v == null ? "—" : Math.round(v).toLocaleString("en-US")),
  seconds: (v) => (v == null ? "—" : v < 10 ? `${v.toFixed(1)}s` : `${Math.round(v)}s`),
  duration(v) {
    if (v == null) return "—";
    const s = Math.round(v);
    return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
  },
  compact(v) {
    if (v == null) return "—";
    const s = Math.max(0, Math.round(v));
    return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}` : `${s}s`;
  },
  surge: (v) => (v == null ? "—" : `${v.toFixed(1)}×`),
  money: (v) => (v == null ? "—" : `$${v.toFixed(2)}`),
  rate: (v) => (v == null ? "—" : v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v >= 10 || Number.isInteger(v) ? `${Math.round(v)}` : v.toFixed(1)),
  clock(ms) {
    if (!ms) return "—";
    const d = new Date(ms);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  },
  ago(ms, now = Date.now()) {
    if (!ms) return "never";
    const s = Math.max(0, (now - ms) / 1000);
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    return `${Math.floor(s / 3600)}h ago`;
  },
  // Long ids (UUIDs, prefixed ids) keep their tail, which is what tells them apart.
  shortId: (id) => (id && id.length > 10 ? `…${id.slice(-8)}` : id || "—"),
};

export function escapeHtml(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
