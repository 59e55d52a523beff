// uPlot line charts that follow their container's width and the colour
// scheme, updated in place with setData so a snapshot never rebuilds them
// (a rebuild would drop the legend's series toggles and the cursor).

import { DASH, compact, isNumber, list, ms, percent } from "./format.js";
import { byId } from "./dom.js";

const darkScheme = window.matchMedia("(prefers-color-scheme: dark)");
const phoneWidth = window.matchMedia("(max-width: 600px)");

// Canvas has no stylesheet: the colours come from dashboard.css's custom
// properties, read again whenever the scheme flips.
function theme() {
  const css = getComputedStyle(document.documentElement);
  const read = (name) => css.getPropertyValue(name).trim();
  return {
    text: read("--muted"),
    grid: read("--grid"),
    palette: [1, 2, 3, 4, 5, 6].map((n) => read(`--series-${n}`)),
    bad: read("--bad"),
    panel: read("--panel"),
  };
}

function axis(colours, extra = {}) {
  return {
    stroke: colours.text,
    grid: { stroke: colours.grid, width: 1 },
    ticks: { stroke: colours.grid, width: 1 },
    ...extra,
  };
}

// From zero up, and still a usable scale when every value is null or zero
// (uPlot would otherwise get NaN bounds from an empty series).
function fromZero(minimum) {
  return (_u, _min, max) => [0, isNumber(max) && max > 0 ? max * 1.1 : minimum];
}

// Without points the time axis still shows the last hour rather than 1970.
function timeRange(_u, min, max) {
  if (isNumber(min) && isNumber(max) && max > min) return [min, max];
  const now = Date.now() / 1000;
  return isNumber(min) ? [min - 60, min + 60] : [now - 3600, now];
}

const legendValue = (format) => (_u, value) => (isNumber(value) ? format(value) : DASH);

function xSeries() {
  return {
    value: (_u, value) =>
      isNumber(value) ? new Date(value * 1000).toLocaleTimeString([], { hour12: false }) : DASH,
  };
}

class Chart {
  // build(colours, labels) -> uPlot options without width/height.
  constructor(id, build) {
    this.container = byId(id);
    this.build = build;
    this.plot = null;
    this.labels = null;
    this.data = null;
    new ResizeObserver(() => this.resize()).observe(this.container);
    darkScheme.addEventListener("change", () => this.rebuild());
  }

  size() {
    const width = Math.max(200, Math.floor(this.container.clientWidth));
    return { width, height: phoneWidth.matches ? 200 : 260 };
  }

  resize() {
    if (!this.plot) return;
    const { width, height } = this.size();
    if (width !== this.plot.width || height !== this.plot.height)
      this.plot.setSize({ width, height });
  }

  rebuild() {
    this.plot?.destroy();
    this.plot = null;
    if (this.data) this.update(this.labels, this.data);
  }

  // labels: one per y series; data: [xs, ...ys], all the same length.
  update(labels, data) {
    const same =
      this.labels &&
      labels.length === this.labels.length &&
      labels.every((l, i) => l === this.labels[i]);
    this.labels = labels;
    this.data = data;
    if (this.plot && same) this.plot.setData(data);
    else {
      this.plot?.destroy();
      this.plot = new window.uPlot(
        { ...this.size(), ...this.build(theme(), labels) },
        data,
        this.container,
      );
    }
    // For scripts and tests: how many instants have at least one value.
    const points = data[0].filter((_x, i) => data.slice(1).some((ys) => isNumber(ys[i]))).length;
    this.container.dataset.points = String(points);
  }
}

// uPlot data: the instants with a usable time, each series read at the same
// indexes, a missing value as null (drawn as a gap).
function columns(xs, ...series) {
  const times = list(xs);
  const keep = times.flatMap((x, i) => (isNumber(x) ? [i] : []));
  return [
    keep.map((i) => times[i]),
    ...series.map((ys) => {
      const values = list(ys);
      return keep.map((i) => (isNumber(values[i]) ? values[i] : null));
    }),
  ];
}

// update(minutes, [[label, counts], ...])
export function activityChart(id) {
  const chart = new Chart(id, (colours, labels) => ({
    scales: { x: { time: true, range: timeRange }, y: { range: fromZero(1) } },
    axes: [axis(colours), axis(colours, { size: 48, values: (_u, splits) => splits.map(compact) })],
    series: [
      xSeries(),
      ...labels.map((label, i) => ({
        label,
        stroke: colours.palette[i % colours.palette.length],
        width: 2,
        points: { fill: colours.panel },
        value: legendValue(compact),
      })),
    ],
  }));
  return (minutes, entries) => {
    chart.update(
      entries.map(([label]) => label),
      columns(minutes, ...entries.map(([, counts]) => counts)),
    );
  };
}

const REQUEST_LABELS = ["requests/s", "p99", "errors"];

export function requestsChart(id) {
  const chart = new Chart(id, (colours) => ({
    scales: {
      x: { time: true, range: timeRange },
      rps: { range: fromZero(1) },
      ms: { range: fromZero(1) },
      // Errors get a scale of their own: a 1 % burn must show next to 500 req/s.
      ratio: { range: fromZero(0.01) },
    },
    axes: [
      axis(colours),
      axis(colours, {
        scale: "rps",
        size: 52,
        values: (_u, splits) => splits.map((v) => `${compact(v)}/s`),
      }),
      axis(colours, {
        scale: "ms",
        side: 1,
        size: 60,
        grid: { show: false },
        values: (_u, splits) => splits.map(ms),
      }),
    ],
    series: [
      xSeries(),
      {
        label: REQUEST_LABELS[0],
        scale: "rps",
        stroke: colours.palette[0],
        width: 2,
        value: legendValue((v) => `${compact(v)}/s`),
      },
      {
        label: REQUEST_LABELS[1],
        scale: "ms",
        stroke: colours.palette[1],
        width: 2,
        value: legendValue(ms),
      },
      {
        label: REQUEST_LABELS[2],
        scale: "ratio",
        stroke: colours.bad,
        width: 1.5,
        dash: [6, 4],
        value: legendValue(percent),
      },
    ],
  }));
  return (history) => {
    chart.update(
      REQUEST_LABELS,
      columns(history?.t, history?.requests_per_second, history?.p99_ms, history?.error_ratio),
    );
  };
}
