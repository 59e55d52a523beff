// Performance: request rate, latency and errors over time, per endpoint, and
// the caches, notifier and consumers that shape them.

import { DASH, integer, isNumber, list, ms, percent, perSecond } from "./format.js";
import { byId, el, setFigure, setText } from "./dom.js";
import { requestsChart } from "./charts.js";
import { Table } from "./table.js";

function meter(ratio) {
  return el("span", {
    className: "bar",
    style: { "--share": String(isNumber(ratio) ? ratio : 0) },
  });
}

export function createPerformance() {
  const chart = requestsChart("chart-requests");
  const endpoints = new Table(
    "table-endpoints",
    [
      { label: "service", value: (row) => row.service },
      { label: "kind", value: (row) => row.kind },
      { label: "endpoint", value: (row) => row.name, title: (row) => row.name },
      { label: "rate", numeric: true, value: (row) => row.rate_per_second, format: perSecond },
      { label: "errors", numeric: true, value: (row) => row.error_ratio, format: percent },
      { label: "p50", numeric: true, value: (row) => row.p50_ms, format: ms },
      { label: "p95", numeric: true, value: (row) => row.p95_ms, format: ms },
      { label: "p99", numeric: true, value: (row) => row.p99_ms, format: ms },
    ],
    { sortBy: 3, empty: "No requests in the window" },
  );
  const consumers = new Table(
    "table-consumers",
    [
      { label: "consumer", value: (row) => row.consumer },
      { label: "pending", numeric: true, value: (row) => row.pending, format: integer },
    ],
    { sortBy: 1, empty: "No consumers" },
  );

  return (overview) => {
    const performance = overview?.performance;
    const source = performance?.source ? `from ${performance.source}` : "source unknown";
    const windowSeconds = performance?.window_seconds;
    setText(
      "performance-source",
      isNumber(windowSeconds) ? `${source}, rates over ${windowSeconds} s` : source,
    );

    chart(performance?.history);
    endpoints.update(performance?.endpoints);
    consumers.update(performance?.consumers);

    const layers = list(performance?.cache_hit_ratio).filter(
      (row) => row && typeof row === "object",
    );
    byId("cache-hit-ratio").replaceChildren(
      ...(layers.length
        ? layers.map((row) =>
            el(
              "li",
              {},
              el("span", { className: "meter-label" }, row.layer ?? DASH),
              meter(row.ratio),
              el("span", { className: "num" }, percent(row.ratio)),
            ),
          )
        : [el("li", { className: "empty" }, "No cache lookups yet")]),
    );

    setFigure("figure-notifier-connections", performance?.notifier?.connections, integer);
    setFigure("figure-notifier-p99", performance?.notifier?.delivery_p99_ms, ms);
  };
}
