// The live map: offline base layer, surge hexagons, rides, and drivers drawn on one canvas
// that moves each dot smoothly from its previous sample to its new one.

import { DRIVER_COLOR, OPEN_STATUSES, RIDE_COLOR, TERMINAL_STATUSES, escapeHtml, fmt, surgeColor, surgeOpacity } from "./theme.js";

const OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
const BASE_STYLE = {
  outline: { color: "#2b3a55", weight: 1.5, fillColor: "#0c1420", fillOpacity: 1 },
  arterial: { color: "#1c2940", weight: 1.4, opacity: 1 },
  street: { color: "#131d2e", weight: 0.8, opacity: 1 },
};

// Drivers: a canvas in its own pane, redrawn on animation frames while something moves.
class DriverCanvas {
  constructor(map) {
    this.map = map;
    this.dots = new Map(); // id → {fromLat, fromLon, toLat, toLon, t0, dur, last, status}
    this.highlight = null;
    map.createPane("drivers").style.zIndex = 450;
    this.canvas = L.DomUtil.create("canvas", "driver-canvas", map.getPane("drivers"));
    this.canvas.style.pointerEvents = "none";
    this.ctx = this.canvas.getContext("2d");
    this.dirty = true;
    this.tip = L.DomUtil.create("div", "driver-tip", map.getContainer());
    this.tip.hidden = true;
    map.on("move zoomend resize viewreset", () => { this.dirty = true; });
    map.on("zoomanim", () => { this.canvas.style.visibility = "hidden"; });
    map.on("zoomend", () => { this.canvas.style.visibility = "visible"; });
    map.on("mousemove", (e) => this.hover(e.containerPoint));
    map.on("mouseout", () => { this.tip.hidden = true; });
    const loop = () => { this.frame(); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  }

  reset(drivers) {
    this.dots.clear();
    this.upsert([...drivers.values()]);
  }

  upsert(drivers) {
    const now = performance.now();
    for (const d of drivers) {
      const dot = this.dots.get(d.id);
      if (!dot) {
        this.dots.set(d.id, { fromLat: d.lat, fromLon: d.lon, toLat: d.lat, toLon: d.lon, t0: now, dur: 0, last: now, status: d.status });
      } else {
        if (dot.toLat !== d.lat || dot.toLon !== d.lon) {
          const [lat, lon] = this.position(dot, now);
          // Glide over the time since this driver's previous sample, so motion is continuous.
          dot.dur = Math.min(5000, Math.max(400, now - dot.last));
          Object.assign(dot, { fromLat: lat, fromLon: lon, toLat: d.lat, toLon: d.lon, t0: now, last: now });
        }
        dot.status = d.status;
      }
    }
    this.dirty = true;
    this.count();
  }

  remove(ids) {
    for (const id of ids) this.dots.delete(id);
    this.dirty = true;
    this.count();
  }

  count() {
    this.map.getContainer().dataset.drivers = String(this.dots.size); // for tests and a11y tools
  }

  position(dot, now) {
    if (!dot.dur || now >= dot.t0 + dot.dur) return [dot.toLat, dot.toLon];
    const f = (now - dot.t0) / dot.dur;
    const e = f * f * (3 - 2 * f); // smoothstep
    return [dot.fromLat + (dot.toLat - dot.fromLat) * e, dot.fromLon + (dot.toLon - dot.fromLon) * e];
  }

  frame() {
    const now = performance.now();
    let moving = false;
    for (const dot of this.dots.values()) if (dot.dur && now < dot.t0 + dot.dur) { moving = true; break; }
    if (!moving && !this.dirty) return;
    this.dirty = false;
    this.draw(now);
  }

  draw(now) {
    const map = this.map;
    const size = map.getSize();
    const ratio = window.devicePixelRatio || 1;
    const canvas = this.canvas;
    if (canvas.width !== size.x * ratio || canvas.height !== size.y * ratio) {
      canvas.width = size.x * ratio;
      canvas.height = size.y * ratio;
      canvas.style.width = `${size.x}px`;
      canvas.style.height = `${size.y}px`;
    }
    L.DomUtil.setPosition(canvas, map.containerPointToLayerPoint([0, 0]));
    const ctx = this.ctx;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, size.x, size.y);
    const zoom = map.getZoom();
    const radius = zoom >= 15 ? 5.5 : zoom >= 14 ? 4.6 : zoom >= 13 ? 3.8 : 3.2;
    const byStatus = new Map();
    this.screen = [];
    for (const [id, dot] of this.dots) {
      const [lat, lon] = this.position(dot, now);
      const p = map.latLngToContainerPoint([lat, lon]);
      if (p.x < -10 || p.y < -10 || p.x > size.x + 10 || p.y > size.y + 10) continue;
      this.screen.push([id, p.x, p.y, dot.status]);
      if (!byStatus.has(dot.status)) byStatus.set(dot.status, []);
      byStatus.get(dot.status).push(p);
    }
    ctx.lineWidth = 1.2;
    ctx.strokeStyle = "rgba(5, 8, 14, 0.9)";
    for (const [status, points] of byStatus) {
      ctx.fillStyle = DRIVER_COLOR[status] || "#94a3b8";
      ctx.beginPath();
      for (const p of points) { ctx.moveTo(p.x + radius, p.y); ctx.arc(p.x, p.y, radius, 0, Math.PI * 2); }
      ctx.fill();
      ctx.stroke();
    }
    if (this.highlight && this.dots.has(this.highlight)) {
      const [lat, lon] = this.position(this.dots.get(this.highlight), now);
      const p = map.latLngToContainerPoint([lat, lon]);
      ctx.beginPath();
      ctx.arc(p.x, p.y, radius + 5, 0, Math.PI * 2);
      ctx.strokeStyle = "#f8fafc";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
  }

  hover(point) {
    let best = null;
    let bestD = 64; // within 8 px
    for (const [id, x, y, status] of this.screen || []) {
      const d = (x - point.x) ** 2 + (y - point.y) ** 2;
      if (d < bestD) { bestD = d; best = [id, x, y, status]; }
    }
    if (!best) { this.tip.hidden = true; return; }
    const [id, x, y, status] = best;
    this.tip.innerHTML = `<span class="mono">${escapeHtml(id)}</span> · ${escapeHtml(status.replace("_", " "))}`;
    this.tip.style.left = `${x + 10}px`;
    this.tip.style.top = `${y - 12}px`;
    this.tip.hidden = false;
  }
}

export class CityMap {
  constructor(element, { onSelectRide }) {
    this.map = L.map(element, { zoomControl: true, zoomSnap: 0.25, attributionControl: true, preferCanvas: false });
    this.map.attributionControl.setPrefix("Leaflet");
    this.map.zoomControl.setPosition("topleft");
    for (const [name, z] of [["basemap", 250], ["surge", 350], ["rides", 420], ["labels", 430]]) {
      this.map.createPane(name).style.zIndex = z;
    }
    this.onSelectRide = onSelectRide;
    this.drivers = new DriverCanvas(this.map);
    this.surgeLayers = new Map();
    this.rideLayers = new Map();
    this.selected = null;
    this.marketId = null; // the market the view is fitted to
    this.baseLayers = []; // its outline and sector labels (streets live in this.streets)
    this.basemapFor = null; // the market whose base map is drawn
    this.streets = L.layerGroup().addTo(this.map);
    this.osm = null;
  }

  // A failed load (the dashboard restarting) leaves basemapFor unset, so the snapshot that
  // follows the reconnect tries again; it never surfaces as an unhandled rejection.
  async loadBasemap(marketId) {
    let geojson;
    try {
      const response = await fetch(`/basemap.geojson?market=${encodeURIComponent(marketId)}`);
      if (!response.ok) return;
      geojson = await response.json();
    } catch {
      return;
    }
    if (this.marketId !== marketId) return; // switched while loading
    this.basemapFor = marketId;
    for (const layer of this.baseLayers || []) this.map.removeLayer(layer);
    this.streets.clearLayers();
    const added = [];
    this.baseLayers = added;
    const streets = [];
    L.geoJSON(geojson, {
      pane: "basemap",
      interactive: false,
      filter: (f) => f.properties.kind !== "sector",
      style: (f) => BASE_STYLE[f.properties.kind] || BASE_STYLE.street,
      onEachFeature: (f, layer) => { if (f.properties.kind !== "outline") streets.push(layer); },
    }).eachLayer((layer) => (streets.includes(layer) ? this.streets.addLayer(layer) : added.push(layer.addTo(this.map))));
    for (const f of geojson.features.filter((f) => f.properties.kind === "sector")) {
      const [lon, lat] = f.geometry.coordinates;
      added.push(L.marker([lat, lon], {
        pane: "labels", interactive: false, keyboard: false,
        icon: L.divIcon({ className: "sector-label", html: escapeHtml(f.properties.name), iconSize: [40, 14] }),
      }).addTo(this.map));
    }
  }

  // Fits the map to the market once; a switch to another market re-fits and swaps the base map.
  setMarket(market) {
    if (this.marketId === market.id) {
      if (this.basemapFor !== market.id) this.loadBasemap(market.id);
      return;
    }
    this.marketId = market.id;
    const b = market.bbox;
    const bounds = L.latLngBounds([b.min_lat, b.min_lon], [b.max_lat, b.max_lon]);
    this.map.setMaxBounds(null);
    this.map.fitBounds(bounds, { padding: [12, 12] });
    this.map.setMaxBounds(bounds.pad(0.6));
    this.loadBasemap(market.id);
  }

  setOnlineTiles(on) {
    if (on && !this.osm) {
      this.osm = L.tileLayer(OSM_URL, {
        maxZoom: 19, className: "osm-tiles",
        attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
      }).addTo(this.map);
      this.map.removeLayer(this.streets);
    } else if (!on && this.osm) {
      this.map.removeLayer(this.osm);
      this.osm = null;
      this.streets.addTo(this.map);
    }
  }

  resetDrivers(drivers) { this.drivers.reset(drivers); }
  updateDrivers(part) {
    if (part.remove) this.drivers.remove(part.remove);
    if (part.upsert) this.drivers.upsert(part.upsert);
  }

  renderSurge(surge) {
    for (const [cell, layer] of this.surgeLayers) {
      if (!surge.has(cell)) { layer.remove(); this.surgeLayers.delete(cell); }
    }
    for (const [cell, item] of surge) {
      const style = {
        pane: "surge", weight: item.multiplier > 1 ? 1 : 0, color: surgeColor(item.multiplier), opacity: 0.55,
        fillColor: surgeColor(item.multiplier), fillOpacity: surgeOpacity(item.multiplier),
      };
      let layer = this.surgeLayers.get(cell);
      if (!layer) {
        layer = L.polygon(item.boundary, style).addTo(this.map);
        layer.bindTooltip("", { className: "rp-tip", sticky: true, direction: "top" });
        this.surgeLayers.set(cell, layer);
      } else {
        layer.setStyle(style);
      }
      layer.setTooltipContent(`Surge <b>${fmt.surge(item.multiplier)}</b> <span class="mono">${escapeHtml(cell)}</span>`);
    }
  }

  renderRides(rides) {
    for (const [id, layers] of this.rideLayers) {
      const ride = rides.get(id);
      if (!ride || TERMINAL_STATUSES.has(ride.status)) { layers.group.remove(); this.rideLayers.delete(id); }
    }
    for (const [id, ride] of rides) {
      if (TERMINAL_STATUSES.has(ride.status) || ride.pickup_lat == null) continue;
      let layers = this.rideLayers.get(id);
      const key = `${ride.status}|${this.selected === id}`;
      if (layers && layers.key === key) continue;
      if (layers) layers.group.remove();
      layers = { key, group: this.rideGroup(ride, this.selected === id) };
      layers.group.addTo(this.map);
      this.rideLayers.set(id, layers);
    }
  }

  rideGroup(ride, selected) {
    const color = RIDE_COLOR[ride.status] || "#94a3b8";
    const open = OPEN_STATUSES.has(ride.status);
    const pickup = [ride.pickup_lat, ride.pickup_lon];
    const parts = [];
    if (ride.dropoff_lat != null) {
      const dropoff = [ride.dropoff_lat, ride.dropoff_lon];
      parts.push(L.polyline([pickup, dropoff], {
        pane: "rides", color, weight: selected ? 3.5 : 1.8, opacity: selected ? 1 : open ? 0.55 : 0.75,
        dashArray: open ? "4 5" : null, lineCap: "round",
      }));
      parts.push(L.circleMarker(dropoff, { pane: "rides", radius: selected ? 4 : 2.5, color, weight: 1.5, fillColor: "#070b12", fillOpacity: 1 }));
    }
    if (open) {
      parts.push(L.circleMarker(pickup, { pane: "rides", radius: 11, stroke: false, fillColor: color, fillOpacity: 0.16, className: "pickup-halo" }));
    }
    parts.push(L.circleMarker(pickup, {
      pane: "rides", radius: open ? 5.5 : 3.5, color: selected ? "#f8fafc" : color, weight: open ? 2 : 1.5,
      fillColor: color, fillOpacity: open ? 0.45 : 0.9,
    }));
    const group = L.featureGroup(parts);
    group.on("click", () => this.onSelectRide(ride.ride_id));
    group.bindTooltip(`<span class="mono">${escapeHtml(fmt.shortId(ride.ride_id))}</span> · ${escapeHtml(ride.status.replace("_", " "))}`,
      { className: "rp-tip", sticky: true, direction: "top" });
    return group;
  }

  select(rideId, ride) {
    this.selected = rideId;
    this.drivers.highlight = ride && ride.driver_id ? ride.driver_id : null;
    this.drivers.dirty = true;
  }
}
