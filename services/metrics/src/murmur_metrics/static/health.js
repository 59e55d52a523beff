// Health: the header's badges and alert count, and the infrastructure
// section (Redis, NATS, the database, firing alerts).

import { DASH, bytes, compact, dateTime, duration, integer, list, text } from "./format.js";
import { byId, el, facts, setStatus, tone } from "./dom.js";
import { Table } from "./table.js";

function badge(service) {
  const status = service.status ?? "unknown";
  const problem = status !== "serving";
  return el(
    "li",
    {
      className: "badge",
      dataset: { tone: tone(status), status },
      title: [
        service.instance,
        String(status).replaceAll("_", " "),
        service.version ? `v${service.version}` : null,
        `up ${duration(service.uptime_seconds)}`,
      ]
        .filter(Boolean)
        .join(" · "),
    },
    text(service.name),
    // Colour alone would not tell everyone: a problem is spelled out.
    problem ? el("span", { className: "badge-status" }, String(status).replaceAll("_", " ")) : null,
  );
}

function alertItem(alert) {
  return el(
    "li",
    { dataset: { severity: alert.severity ?? "" } },
    el("span", { className: "severity" }, text(alert.severity)),
    el("strong", {}, text(alert.name)),
    el("span", {}, alert.summary ? String(alert.summary) : ""),
    el(
      "time",
      { className: "muted", dateTime: alert.since ?? "" },
      `since ${dateTime(alert.since)}`,
    ),
  );
}

export function createHealth() {
  const streams = new Table(
    "table-nats-streams",
    [
      { label: "stream", value: (row) => row.name },
      { label: "messages", numeric: true, value: (row) => row.messages, format: compact },
      { label: "bytes", numeric: true, value: (row) => row.bytes, format: bytes },
    ],
    { sortBy: 0, descending: false, empty: "No streams" },
  );
  const consumers = new Table(
    "table-nats-consumers",
    [
      { label: "stream", value: (row) => row.stream },
      { label: "consumer", value: (row) => row.name },
      { label: "pending", numeric: true, value: (row) => row.pending, format: integer },
      { label: "ack pending", numeric: true, value: (row) => row.ack_pending, format: integer },
    ],
    { sortBy: 2, empty: "No consumers" },
  );

  return (overview) => {
    const health = overview?.health;
    const services = list(health?.services).filter((s) => s && typeof s === "object");
    byId("health-badges").replaceChildren(
      ...(services.length
        ? services.map(badge)
        : [el("li", { className: "badge", dataset: { tone: "unknown" } }, "no services")]),
    );

    const firing = health?.alerts?.firing;
    const count = Array.isArray(firing) ? firing.length : null;
    const counter = byId("alerts-firing");
    counter.textContent =
      count === null ? `${DASH} alerts firing` : `${count} alert${count === 1 ? "" : "s"} firing`;
    counter.dataset.count = count === null ? "" : String(count);
    counter.dataset.tone = count ? "bad" : count === 0 ? "ok" : "unknown";

    const redis = health?.redis;
    setStatus("redis-status", redis?.status);
    facts("redis-facts", [
      ["version", text(redis?.version)],
      ["memory", bytes(redis?.used_memory_bytes)],
      ["clients", integer(redis?.connected_clients)],
    ]);

    const database = health?.database;
    setStatus("database-status", database?.status);
    facts("database-facts", [["detail", text(database?.detail)]]);

    setStatus("nats-status", health?.nats?.status);
    streams.update(health?.nats?.streams);
    consumers.update(health?.nats?.consumers);

    const source = health?.alerts?.source;
    byId("alerts-source").textContent = source ? `from ${source}` : "";
    const alerts = list(firing).filter((a) => a && typeof a === "object");
    byId("alerts-list").replaceChildren(
      ...(alerts.length
        ? alerts.map(alertItem)
        : [el("li", { className: "empty" }, "Nothing firing.")]),
    );
  };
}
