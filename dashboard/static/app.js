// Wiring: the feed connection drives the map, charts and panels; renders are batched per frame.

import { Charts } from "./charts.js";
import { FeedConnection } from "./feed.js";
import { CityMap } from "./map.js";
import { EventLog, KpiTiles, Legend, RideDetail, RidesTable, ServicesPanel } from "./panels.js";

// the server sends a series point every second while its Redis reads succeed, so five seconds
// without one means its data stopped (feed.js lastDataAt), whatever other deltas still arrive
const STALE_AFTER_S = 5;
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token") || "";

let state = null;
let selected = null;
const dirty = new Set();
let frame = 0;

const kpis = new KpiTiles($("kpis"));
const legend = new Legend($("legend"));
const map = new CityMap($("map"), { onSelectRide: select });
const charts = new Charts({
  telemetry: $("chart-telemetry"), rides: $("chart-rides"), lag: $("chart-lag"),
  telemetryNow: $("telemetry-now"), ridesNow: $("rides-now"), lagLegend: $("lag-legend"),
});
const rides = new RidesTable($("rides"), $("rides-empty"), $("rides-meta"), select);
const events = new EventLog($("events"), $("event-filters"), $("events-meta"), select);
const services = new ServicesPanel($("services"), $("services-empty"), $("dead-letters"));
const detail = new RideDetail($("ride-detail"), { token, onClose: () => select(null) });

function select(rideId) {
  selected = rideId;
  rides.selected = rideId;
  const ride = rideId && state ? state.rides.get(rideId) : null;
  map.select(rideId, ride);
  if (rideId) detail.open(rideId, ride); else detail.close();
  schedule(["rides"]);
}

function schedule(parts) {
  for (const part of parts) dirty.add(part);
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  if (!state) return;
  if (dirty.has("kpis")) kpis.update(state.kpis);
  if (dirty.has("rides")) {
    map.renderRides(state.rides);
    rides.update(state.rides);
    if (selected) {
      const ride = state.rides.get(selected);
      if (ride) { detail.render(ride); map.select(selected, ride); }
    }
  }
  if (dirty.has("surge")) map.renderSurge(state.surge);
  if (dirty.has("drivers") || dirty.has("rides")) legend.update(state.drivers, state.rides);
  if (dirty.has("services") || dirty.has("kpis")) services.update(state.services, state.kpis);
  if (dirty.has("events")) events.update(state.events);
  if (dirty.has("series")) charts.update(state.series);
  dirty.clear();
}

const marketSelect = $("market-select");

// The markets this dashboard serves, from the snapshot; the switch shows only with two or more.
function showMarkets(market) {
  const choices = market.markets || [];
  $("market-switch").hidden = choices.length < 2;
  const ids = choices.map((m) => m.id).join(",");
  if (marketSelect.dataset.ids !== ids) {
    marketSelect.replaceChildren(...choices.map((m) => new Option(m.name, m.id)));
    marketSelect.dataset.ids = ids;
  }
  marketSelect.value = market.id;
}

const connection = new FeedConnection({
  token,
  market: new URLSearchParams(location.search).get("market") || "",
  onSnapshot(snapshot) {
    state = snapshot;
    showMarkets(snapshot.market);
    $("market-name").textContent = snapshot.market.name;
    document.title = `RidePulse · ${snapshot.market.name}`;
    map.setMarket(snapshot.market);
    map.resetDrivers(snapshot.drivers);
    schedule(["kpis", "rides", "surge", "drivers", "services", "events", "series"]);
  },
  onDelta(current, changed, delta) {
    if (delta.drivers) map.updateDrivers(delta.drivers);
    schedule(changed);
  },
  onStatus: updateBadge,
});

function updateBadge() {
  const badge = $("conn-badge");
  const age = connection.ageSeconds();
  let status = connection.status;
  if (status === "live" && age !== null && age > STALE_AFTER_S) status = "stale";
  badge.dataset.state = status;
  const ageText = age === null ? "" : ` · ${age < 10 ? age.toFixed(1) : Math.round(age)}s`;
  badge.querySelector(".badge-text").textContent = `${status}${ageText}`;
  badge.title = age === null ? "no data yet" : `last data from Redis ${age.toFixed(1)} s ago`;
  const notice = $("notice");
  notice.hidden = status !== "unauthorized" && status !== "refused";
  if (status === "unauthorized") {
    notice.textContent = `The feed refused this page (${connection.closedReason}): open a fresh dashboard link (printed by \`ridepulse up\`, or \`ridepulse token --dashboard\`): it carries a dashboard token that is good for a few minutes.`;
  } else if (status === "refused") {
    notice.textContent = `The feed refused this page: ${connection.closedReason}.`;
  }
}

function tickClock() {
  $("clock").textContent = new Date().toLocaleTimeString("en-GB", { hour12: false });
  if (state) { services.render(); rides.update(state.rides); }
}

$("online-tiles").addEventListener("change", (e) => map.setOnlineTiles(e.target.checked));
marketSelect.addEventListener("change", () => {
  select(null);
  state = null;
  connection.switchMarket(marketSelect.value);
  // the address bar names the market, so a reload (or a bookmark) comes back to it
  const url = new URL(location.href);
  url.searchParams.set("market", marketSelect.value);
  history.replaceState(null, "", url);
});
setInterval(updateBadge, 250);
setInterval(tickClock, 1000);
tickClock();
connection.connect();

// For debugging in the console and for the browser tests.
window.ridepulse = { connection, map, get state() { return state; } };
