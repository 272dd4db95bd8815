// The live feed: the state model the page keeps, `applyDelta` (the mirror of
// dashboard/protocol.py), and the WebSocket connection that resumes with last_seq.

export class SequenceGap extends Error {}

const KEYED = [["drivers", "id"], ["rides", "ride_id"], ["surge", "cell"]];
const COLUMNS = ["t", "telemetry_per_s", "ride_events_per_s"];

function copySeries(series) {
  const out = { lag: {} };
  for (const name of COLUMNS) out[name] = series[name].slice();
  for (const [group, values] of Object.entries(series.lag)) out.lag[group] = values.slice();
  return out;
}

// Same rule as dashboard/series.py append_point.
export function appendPoint(series, point, limit) {
  const lag = series.lag;
  const pointLag = point.lag || {};
  for (const group of Object.keys(pointLag)) {
    if (!(group in lag)) lag[group] = new Array(series.t.length).fill(null);
  }
  for (const name of COLUMNS) series[name].push(point[name] ?? null);
  for (const [group, values] of Object.entries(lag)) values.push(pointLag[group] ?? null);
  const excess = series.t.length - limit;
  if (excess > 0) {
    for (const name of COLUMNS) series[name].splice(0, excess);
    for (const values of Object.values(lag)) values.splice(0, excess);
  }
  for (const [group, values] of Object.entries(lag)) {
    if (values.every((v) => v === null)) delete lag[group];
  }
}

// A frame's text → the message applyDelta works with: drivers travel as rows
// [id, lat, lon, status, heading] (dashboard/protocol.py DRIVER_FIELDS) and become objects here.
const DRIVER_FIELDS = ["id", "lat", "lon", "status", "heading"];

function driverObjects(rows) {
  return rows.map((row) => Object.fromEntries(DRIVER_FIELDS.map((name, i) => [name, row[i]])));
}

export function decode(text) {
  const msg = JSON.parse(text);
  const drivers = msg.drivers;
  if (Array.isArray(drivers)) msg.drivers = driverObjects(drivers);
  else if (drivers && drivers.upsert) drivers.upsert = driverObjects(drivers.upsert);
  return msg;
}

export function fromSnapshot(msg) {
  const state = {
    epoch: msg.epoch, seq: msg.seq, market: msg.market, limits: msg.limits,
    kpis: msg.kpis, services: msg.services, events: msg.events.slice(), series: copySeries(msg.series),
  };
  for (const [name, key] of KEYED) state[name] = new Map(msg[name].map((item) => [item[key], item]));
  return state;
}

// Applies one delta in place; returns which parts changed. Throws SequenceGap when the
// delta does not follow the state (the caller then asks for a fresh snapshot).
export function applyDelta(state, delta) {
  if (delta.seq !== state.seq + 1) throw new SequenceGap(`delta ${delta.seq} after ${state.seq}`);
  state.seq = delta.seq;
  const changed = new Set();
  for (const [name, key] of KEYED) {
    const part = delta[name];
    if (!part) continue;
    const map = state[name];
    for (const gone of part.remove || []) map.delete(gone);
    for (const item of part.upsert || []) map.set(item[key], item);
    changed.add(name);
  }
  for (const name of ["kpis", "services"]) {
    if (name in delta) { state[name] = delta[name]; changed.add(name); }
  }
  if (delta.events && delta.events.length) {
    state.events = state.events.concat(delta.events).slice(-state.limits.events);
    changed.add("events");
  }
  if (delta.series_point) {
    appendPoint(state.series, delta.series_point, state.limits.series);
    changed.add("series");
  }
  return changed;
}

// The state as a snapshot message (sorted like the server's), for tests and debugging.
export function toSnapshot(state) {
  const msg = {
    kind: "snapshot", epoch: state.epoch, seq: state.seq, market: state.market, limits: state.limits,
    kpis: state.kpis, services: state.services, events: state.events, series: copySeries(state.series),
  };
  for (const [name] of KEYED) {
    const map = state[name];
    msg[name] = [...map.keys()].sort().map((k) => map.get(k));
  }
  return msg;
}

// Close reasons of a 1008 that a fresh link can cure (dashboard/ws.py closes with the error's
// code when the token is missing, expired or not a viewer's). Any other 1008 (a foreign origin,
// a market this dashboard does not serve) would be refused again the same way: no retry.
const AUTH_REFUSALS = new Set(["unauthorized", "forbidden"]);

// One WebSocket with reconnect (exponential backoff with jitter) and resume by last_seq.
export class FeedConnection {
  constructor({ token, market, onSnapshot, onDelta, onStatus }) {
    this.token = token;
    this.market = market || ""; // "" = the dashboard's default market
    this.onSnapshot = onSnapshot;
    this.onDelta = onDelta;
    this.onStatus = onStatus;
    this.state = null;
    this.attempt = 0;
    this.socket = null;
    // when the last fresh read of Redis arrived: a snapshot, or a delta with a series point
    // (the server samples one a second only while its reads succeed). Any message would not
    // do: with Redis frozen the server still sends the deltas of time alone (matches leaving
    // the last minute, finished rides aging out), and the page looked live on old figures.
    this.lastDataAt = 0;
    this.status = "connecting";
    this.closedReason = "";
  }

  url() {
    const params = new URLSearchParams();
    if (this.token) params.set("token", this.token);
    if (this.market) params.set("market", this.market);
    if (this.state) { params.set("last_seq", String(this.state.seq)); params.set("epoch", this.state.epoch); }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/ws?${params}`;
  }

  connect() {
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.closedReason = event.code === 1008 ? event.reason || "refused" : "";
      if (this.closedReason && !AUTH_REFUSALS.has(this.closedReason)) {
        this.setStatus("refused"); // stays so until the page changes market or is reloaded
        return;
      }
      // unauthorized: retried every ~5 s, so a fresh link opened in another tab (its cookie)
      // brings this page back to life
      this.setStatus(this.closedReason ? "unauthorized" : "reconnecting");
      this.scheduleReconnect();
    };
  }

  // Follow another market: drop this socket (and its state) and open one for that market now.
  switchMarket(market) {
    if (market === this.market) return;
    this.market = market;
    this.state = null;
    const old = this.socket;
    this.socket = null; // its close must not schedule a reconnect
    if (old) old.close();
    this.attempt = 0;
    this.setStatus("connecting");
    this.connect();
  }

  scheduleReconnect() {
    const base = this.closedReason ? 5000 : Math.min(5000, 250 * 2 ** this.attempt);
    this.attempt += 1;
    setTimeout(() => this.connect(), base * (0.75 + Math.random() * 0.5));
  }

  receive(text) {
    const msg = decode(text);
    this.attempt = 0;
    if (msg.kind === "snapshot" || msg.series_point) this.lastDataAt = performance.now();
    if (msg.kind === "snapshot") {
      this.state = fromSnapshot(msg);
      this.onSnapshot(this.state);
    } else if (msg.kind === "delta" && this.state) {
      try {
        const changed = applyDelta(this.state, msg);
        this.onDelta(this.state, changed, msg);
      } catch (err) {
        if (!(err instanceof SequenceGap)) throw err;
        this.state = null; // resync: the next connection gets a snapshot
        this.socket.close();
      }
    }
    this.setStatus("live");
  }

  setStatus(status) {
    if (status !== this.status) { this.status = status; this.onStatus(status); }
  }

  // Seconds since the last fresh data (see lastDataAt); null before the first snapshot.
  ageSeconds() {
    return this.lastDataAt ? (performance.now() - this.lastDataAt) / 1000 : null;
  }
}
