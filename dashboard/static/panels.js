// KPI tiles, the rides table, the event log, the services panel and the ride detail view.

import { DRIVER_STATUSES, RIDE_COLOR, RIDE_LABEL, TERMINAL_STATUSES, escapeHtml, fmt } from "./theme.js";

const KPI_HELP = {
  drivers_online: "drivers in any status but offline",
  drivers_available: "online drivers free for an offer",
  open_requests: "rides requested or offered, not yet matched",
  matched_last_min: "rides matched in the last 60 s",
  ttm_p50_s: "time from request to match, median over the last 5 min",
  ttm_p95_s: "time from request to match, 95th percentile over the last 5 min",
  pickup_eta_p50_s: "pickup ETA at match, median over the last 5 min",
  completed: "rides completed (all time)",
  cancelled: "rides cancelled (all time)",
  expired: "rides that found no driver in time (all time)",
  max_surge: "highest surge multiplier in the market now",
  trip_eta_mae_s: "trip ETA error: mean |quoted trip ETA − actual trip time| over recently completed rides",
  pickup_mean_s: "mean time from match to driver arrival over recent rides",
  fulfilment_rate: "completed share of finished rides (completed, cancelled, expired; all time)",
};

const percent = (v) => (v == null ? "—" : `${(v * 100).toFixed(1)}%`);

export const KPIS = [
  ["drivers_online", "Drivers online", fmt.int, "#38bdf8"],
  ["drivers_available", "Available", fmt.int, "#34d399"],
  ["open_requests", "Open requests", fmt.int, "#fb7185"],
  ["matched_last_min", "Matched 1 min", fmt.int, "#22d3ee"],
  ["ttm_p50_s", "Match p50", fmt.seconds, "#fbbf24"],
  ["ttm_p95_s", "Match p95", fmt.seconds, "#f59e0b"],
  ["pickup_eta_p50_s", "Pickup ETA p50", fmt.duration, "#a78bfa"],
  ["completed", "Completed", fmt.int, "#34d399"],
  ["cancelled", "Cancelled", fmt.int, "#94a3b8"],
  ["expired", "Expired", fmt.int, "#f97316"],
  ["max_surge", "Max surge", fmt.surge, "#ec4899"],
  ["trip_eta_mae_s", "Trip ETA MAE", fmt.duration, "#c084fc"],
  ["pickup_mean_s", "Pickup mean", fmt.duration, "#818cf8"],
  ["fulfilment_rate", "Fulfilment", percent, "#4ade80"],
];

const EVENT_FILTERS = [
  ["all", "All"], ["ride.requested", "requested"], ["ride.offered", "offered"], ["ride.matched", "matched"],
  ["ride.unmatched", "unmatched"], ["ride.driver_arrived", "arrived"], ["ride.started", "started"],
  ["ride.completed", "completed"], ["ride.cancelled", "cancelled"], ["ride.expired", "expired"], ["driver.status", "driver"],
];
const EVENT_TONE = {
  "ride.requested": RIDE_COLOR.requested, "ride.offered": RIDE_COLOR.offered, "ride.matched": RIDE_COLOR.matched,
  "ride.unmatched": "#f472b6", "ride.driver_arrived": RIDE_COLOR.driver_arrived, "ride.started": RIDE_COLOR.started,
  "ride.completed": RIDE_COLOR.completed, "ride.cancelled": RIDE_COLOR.cancelled, "ride.expired": RIDE_COLOR.expired,
  "driver.status": "#64748b",
};

function pill(status) {
  return `<span class="pill" style="--tone:${RIDE_COLOR[status] || "#94a3b8"}">${escapeHtml(RIDE_LABEL[status] || status)}</span>`;
}

export class KpiTiles {
  constructor(element) {
    this.values = {};
    element.innerHTML = KPIS.map(([name, label, , tone]) =>
      `<div class="kpi" data-kpi="${name}" style="--tone:${tone}" title="${KPI_HELP[name]}"><div class="kpi-label">${label}</div><div class="kpi-value" data-value="">—</div></div>`).join("");
    this.tiles = Object.fromEntries(KPIS.map(([name]) => [name, element.querySelector(`[data-kpi="${name}"]`)]));
  }

  update(kpis) {
    for (const [name, , format] of KPIS) {
      const value = kpis[name] ?? null;
      if (this.values[name] === value) continue;
      const tile = this.tiles[name];
      const el = tile.querySelector(".kpi-value");
      el.textContent = format(value);
      el.dataset.value = value == null ? "" : String(value);
      if (name in this.values) { tile.classList.remove("flash"); void tile.offsetWidth; tile.classList.add("flash"); }
      this.values[name] = value;
    }
  }
}

export class Legend {
  constructor(element) {
    element.innerHTML = `
      <div class="legend-title">Drivers</div>
      ${DRIVER_STATUSES.map(([s, label, color]) => `<div class="legend-row" data-legend="${s}"><span class="dot" style="background:${color}"></span>${label}<span class="count">0</span></div>`).join("")}
      <div class="legend-title">Rides</div>
      <div class="legend-row" data-legend="open"><span class="swatch-pin"></span>Open request<span class="count">0</span></div>
      <div class="legend-row" data-legend="active"><span class="swatch-line" style="border-color:${RIDE_COLOR.matched}"></span>Pickup → drop-off<span class="count">0</span></div>
      <div class="legend-title">Surge</div>
      <div class="surge-scale"></div>
      <div class="surge-ticks"><span>1.0×</span><span>1.5×</span><span>2.0×</span><span>2.5×</span><span>3.0×</span></div>`;
    this.element = element;
  }

  update(drivers, rides) {
    const counts = {};
    for (const d of drivers.values()) counts[d.status] = (counts[d.status] || 0) + 1;
    let open = 0;
    let active = 0;
    for (const r of rides.values()) {
      if (r.status === "requested" || r.status === "offered") open += 1;
      else if (!TERMINAL_STATUSES.has(r.status)) active += 1;
    }
    counts.open = open;
    counts.active = active;
    for (const row of this.element.querySelectorAll("[data-legend]")) {
      row.querySelector(".count").textContent = fmt.int(counts[row.dataset.legend] || 0);
    }
  }
}

export class RidesTable {
  constructor(body, empty, meta, onSelect) {
    this.body = body;
    this.empty = empty;
    this.meta = meta;
    this.selected = null;
    body.addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-ride-id]");
      if (row) onSelect(row.dataset.rideId);
    });
  }

  update(rides, now = Date.now()) {
    const list = [...rides.values()].sort((a, b) => {
      const ta = TERMINAL_STATUSES.has(a.status) ? 1 : 0;
      const tb = TERMINAL_STATUSES.has(b.status) ? 1 : 0;
      return ta - tb || (b.requested_at || 0) - (a.requested_at || 0);
    });
    const active = list.filter((r) => !TERMINAL_STATUSES.has(r.status)).length;
    this.meta.textContent = `${fmt.int(active)} active · ${fmt.int(list.length - active)} just finished`;
    this.empty.hidden = list.length > 0;
    this.body.innerHTML = list.slice(0, 300).map((r) => {
      const end = TERMINAL_STATUSES.has(r.status) ? (r.timeline.at(-1) || {}).at : now;
      const age = r.requested_at ? fmt.compact((end - r.requested_at) / 1000) : "—";
      return `<tr data-ride-id="${escapeHtml(r.ride_id)}" data-status="${escapeHtml(r.status)}" class="${r.ride_id === this.selected ? "selected" : ""}">
        <td class="mono" title="${escapeHtml(r.ride_id)}">${escapeHtml(fmt.shortId(r.ride_id))}</td><td>${pill(r.status)}</td>
        <td class="mono" title="${escapeHtml(r.driver_id || "")}">${escapeHtml(fmt.shortId(r.driver_id))}</td><td class="num">${age}</td>
        <td class="num">${fmt.compact(r.pickup_eta_s)}</td></tr>`;
    }).join("");
  }
}

export class EventLog {
  constructor(list, filters, meta, onSelectRide) {
    this.list = list;
    this.meta = meta;
    this.filter = "all";
    this.seen = new Set();
    filters.innerHTML = EVENT_FILTERS.map(([type, label]) =>
      `<button type="button" class="chip" data-filter="${type}" aria-pressed="${type === "all"}">${label}</button>`).join("");
    filters.addEventListener("click", (e) => {
      const chip = e.target.closest("[data-filter]");
      if (!chip) return;
      this.filter = chip.dataset.filter;
      for (const c of filters.querySelectorAll("[data-filter]")) c.setAttribute("aria-pressed", String(c === chip));
      this.update(this.events || []);
    });
    list.addEventListener("click", (e) => {
      const ride = e.target.closest("[data-ride-link]");
      if (ride) onSelectRide(ride.dataset.rideLink);
    });
  }

  update(events) {
    this.events = events;
    const shown = events.filter((e) => this.filter === "all" || e.type === this.filter).slice(-120).reverse();
    this.list.innerHTML = shown.map((e) => {
      const fresh = this.seen.size > 0 && !this.seen.has(e.id);
      const ride = e.ride_id ? `<span class="ev-ride" data-ride-link="${escapeHtml(e.ride_id)}">${escapeHtml(fmt.shortId(e.ride_id))}</span>` : "";
      const driver = e.driver_id ? ` <span class="mono">${escapeHtml(fmt.shortId(e.driver_id))}</span>` : "";
      const detail = e.detail ? ` · ${escapeHtml(e.detail)}` : "";
      return `<li data-type="${escapeHtml(e.type)}" class="${fresh ? "fresh" : ""}"><span class="ev-time">${fmt.clock(e.time)}</span>
        <span class="ev-type" style="--tone:${EVENT_TONE[e.type] || "#94a3b8"}" title="${escapeHtml(e.type)}">${escapeHtml(e.type.replace(/^ride\./, "").replace(/[._]/g, " "))}</span>
        <span class="ev-body">${ride}${driver}${detail}</span></li>`;
    }).join("") || '<li class="empty">No events</li>';
    this.seen = new Set(events.map((e) => e.id));
    this.meta.textContent = this.filter === "all" ? `latest ${shown.length}` : `${shown.length} of latest ${events.length}`;
  }
}

export class ServicesPanel {
  constructor(body, empty, deadLetters) {
    this.body = body;
    this.empty = empty;
    this.deadLetters = deadLetters;
    this.rows = [];
  }

  update(rows, kpis) {
    this.rows = rows;
    if (kpis) this.deadLetters.textContent = `${fmt.int(kpis.dead_letters ?? 0)} dead letters`;
    this.render();
  }

  render(now = Date.now()) {
    this.empty.hidden = this.rows.length > 0;
    this.body.innerHTML = this.rows.map((s) => `
      <tr class="${s.stale ? "stale" : ""}" data-service="${escapeHtml(s.service)}" data-stale="${s.stale}">
        <td><div class="svc-name"><span class="svc-state"></span>${escapeHtml(s.service)} <small>${escapeHtml(s.consumer)}</small>${s.stale ? ' <span class="stale-tag">STALE</span>' : ""}${s.dead_lettered ? ` <span class="dl-tag" title="dead-lettered entries">${fmt.int(s.dead_lettered)} DL</span>` : ""}</div></td>
        <td class="num">${fmt.rate(s.processed_per_s)}</td><td class="num">${fmt.int(s.lag)}</td><td class="num">${fmt.int(s.pending)}</td>
        <td class="num">${fmt.ago(s.last_seen, now)}</td></tr>`).join("");
  }
}

export class RideDetail {
  constructor(element, { token, onClose }) {
    this.element = element;
    this.token = token;
    this.rideId = null;
    this.fetched = null;
    element.addEventListener("click", (e) => { if (e.target.closest(".detail-close")) onClose(); });
  }

  async open(rideId, ride) {
    this.rideId = rideId;
    this.fetched = null;
    this.render(ride);
    if (!ride) {
      const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
      let fetched = { ride_id: rideId, status: "unknown", timeline: [] };
      try {
        const response = await fetch(`/api/rides/${encodeURIComponent(rideId)}`, { headers });
        if (response.ok) fetched = await response.json();
      } catch {
        // the dashboard is restarting: shown as unknown, like a ride the API does not know
      }
      if (this.rideId !== rideId) return;
      this.fetched = fetched;
      this.render(this.fetched);
    }
  }

  close() {
    this.rideId = null;
    this.element.hidden = true;
  }

  render(ride) {
    ride = ride || this.fetched;
    const el = this.element;
    el.hidden = false;
    if (!ride) { el.innerHTML = '<div class="empty">Loading…</div>'; return; }
    el.dataset.rideId = ride.ride_id;
    el.dataset.status = ride.status;
    const start = ride.timeline.length ? ride.timeline[0].at : null;
    const steps = ride.timeline.map((step) => `
      <li data-status="${escapeHtml(step.status)}"><span class="step-dot" style="--tone:${RIDE_COLOR[step.status] || "#94a3b8"}"></span>
        <div class="step-name">${escapeHtml(RIDE_LABEL[step.status] || step.status)}</div>
        <div class="step-time">${fmt.clock(step.at)}.${String(step.at % 1000).padStart(3, "0")}<span class="step-delta">${start !== null && step.at !== start ? `+${fmt.duration((step.at - start) / 1000)}` : ""}</span></div></li>`).join("");
    el.innerHTML = `
      <div class="detail-head"><div><h2>Ride</h2><div class="detail-id">${escapeHtml(ride.ride_id)}</div></div>
        <button type="button" class="detail-close" aria-label="Close">✕</button></div>
      <div style="margin-top:8px">${pill(ride.status)}</div>
      <dl class="detail-grid">
        <dt>Rider</dt><dd class="mono">${escapeHtml(ride.rider_id || "—")}</dd>
        <dt>Driver</dt><dd class="mono">${escapeHtml(ride.driver_id || "—")}</dd>
        <dt>Pickup ETA</dt><dd>${fmt.duration(ride.pickup_eta_s)}</dd>
        <dt>Trip ETA</dt><dd>${fmt.duration(ride.trip_eta_s)}</dd>
        <dt>Surge</dt><dd>${fmt.surge(ride.surge)}</dd>
        <dt>Fare</dt><dd>${fmt.money(ride.fare)}</dd>
        <dt>Version</dt><dd>${fmt.int(ride.version)}</dd>
      </dl>
      <h2>Timeline</h2>
      <ol class="timeline" style="margin-top:10px">${steps}</ol>`;
  }
}
