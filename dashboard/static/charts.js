// The three time-series charts (last five minutes, one point a second), drawn with uPlot.

import { SERIES_COLORS, escapeHtml, fmt } from "./theme.js";

const WINDOW_S = 300;
const AXIS = { stroke: "#64748b", grid: { stroke: "rgba(148,163,184,0.07)", width: 1 }, ticks: { show: false }, font: "10.5px system-ui, sans-serif" };

function options(element, series, height) {
  return {
    width: Math.max(100, element.clientWidth),
    height,
    padding: [6, 22, 0, 0], // room for the last time label
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 5 } },
    scales: {
      // Up to five minutes; while less history exists, the data fills the width.
      x: { time: true, range: (u, min, max) => { const end = max ?? Date.now() / 1000; return [Math.min(end - 10, Math.max(min ?? end, end - WINDOW_S)), end]; } },
      y: { range: (u, min, max) => [0, Math.max(1, (max ?? 0) * 1.18)] },
    },
    axes: [
      { ...AXIS, size: 22, space: 64, values: (u, ticks) => {
        const span = ticks.length > 1 ? ticks.at(-1) - ticks[0] : 0;
        const shape = span < 150 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
        return ticks.map((t) => new Date(t * 1000).toLocaleTimeString("en-GB", shape));
      } },
      { ...AXIS, size: 40, space: 28, values: (u, ticks) => ticks.map((v) => fmt.rate(v)) },
    ],
    series: [{}, ...series.map(({ label, color }) => ({
      label, stroke: color, width: 1.6, points: { show: false }, spanGaps: false,
      fill: series.length === 1 ? `${color}1f` : undefined,
    }))],
  };
}

class LineChart {
  constructor(element, series, height = 92) {
    this.element = element;
    this.labels = series.map((s) => s.label).join("|");
    this.plot = new uPlot(options(element, series, height), [[], ...series.map(() => [])], element);
    this.height = height;
    this.observer = new ResizeObserver(() => this.plot.setSize({ width: Math.max(100, element.clientWidth), height }));
    this.observer.observe(element);
  }

  set(x, ys) { this.plot.setData([x, ...ys]); }
  destroy() { this.observer.disconnect(); this.plot.destroy(); }
}

export class Charts {
  constructor({ telemetry, rides, lag, telemetryNow, ridesNow, lagLegend }) {
    this.telemetry = new LineChart(telemetry, [{ label: "telemetry", color: "#38bdf8" }]);
    this.rides = new LineChart(rides, [{ label: "ride events", color: "#a78bfa" }]);
    this.lagElement = lag;
    this.lag = null;
    this.telemetryNow = telemetryNow;
    this.ridesNow = ridesNow;
    this.lagLegend = lagLegend;
  }

  update(series) {
    const x = series.t.map((t) => t / 1000);
    this.telemetry.set(x, [series.telemetry_per_s]);
    this.rides.set(x, [series.ride_events_per_s]);
    this.telemetryNow.textContent = fmt.rate(series.telemetry_per_s.at(-1));
    this.ridesNow.textContent = fmt.rate(series.ride_events_per_s.at(-1));
    const groups = Object.keys(series.lag).sort();
    const lines = groups.map((label, i) => ({ label, color: SERIES_COLORS[i % SERIES_COLORS.length] }));
    const labels = groups.join("|");
    if (!this.lag || this.lag.labels !== labels) {
      if (this.lag) this.lag.destroy();
      this.lag = new LineChart(this.lagElement, lines.length ? lines : [{ label: "lag", color: "#334155" }]);
    }
    this.lag.set(x, groups.length ? groups.map((g) => series.lag[g]) : [series.t.map(() => null)]);
    this.lagLegend.innerHTML = lines.length
      ? lines.map(({ label, color }) => `<span><i style="background:${color}"></i>${escapeHtml(label)} <b>${fmt.int(series.lag[label].at(-1))}</b></span>`).join("")
      : '<span>no consumer groups yet</span>';
  }
}
