// Resources per service instance, and the SQL statements and RPCs that cost
// the most.

import {
  DASH,
  bytes,
  compact,
  integer,
  isNumber,
  list,
  ms,
  perSecond,
  secondsAsMs,
  text,
} from "./format.js";
import { el } from "./dom.js";
import { Table } from "./table.js";

function cores(value) {
  return isNumber(value) ? compact(value) : DASH;
}

function pools(row) {
  const items = list(row.pools).filter((pool) => pool && typeof pool === "object");
  if (items.length === 0) return document.createTextNode(DASH);
  return el(
    "span",
    { className: "pools" },
    ...items.map((pool) =>
      el(
        "span",
        { className: "pool" },
        // An unbounded pool (a gRPC channel) shows only what is in use.
        isNumber(pool.size)
          ? `${text(pool.name)} ${integer(pool.in_use)}/${integer(pool.size)}`
          : `${text(pool.name)} ${integer(pool.in_use)}`,
      ),
    ),
  );
}

function statement(row) {
  // Cut by CSS (an ellipsis at the column's width); the title has it all.
  return el("code", { className: "statement", title: row.statement ?? "" }, text(row.statement));
}

export function createWorkload() {
  const resources = new Table(
    "table-resources",
    [
      { label: "service", value: (row) => row.service },
      { label: "instance", value: (row) => row.instance },
      { label: "CPU cores", numeric: true, value: (row) => row.cpu_cores, format: cores },
      { label: "memory", numeric: true, value: (row) => row.memory_bytes, format: bytes },
      { label: "open fds", numeric: true, value: (row) => row.open_fds, format: integer },
      {
        label: "loop lag",
        numeric: true,
        value: (row) => row.event_loop_lag_seconds,
        format: secondsAsMs,
      },
      { label: "pools (in use/size)", sortable: false, value: () => null, cell: pools },
    ],
    { sortBy: 0, descending: false, empty: "No instances scraped yet" },
  );
  const statements = new Table(
    "table-queries",
    [
      { label: "service", value: (row) => row.service },
      { label: "statement", value: (row) => row.statement, cell: statement },
      { label: "calls", numeric: true, value: (row) => row.calls, format: compact },
      { label: "mean", numeric: true, value: (row) => row.mean_ms, format: ms },
      { label: "max", numeric: true, value: (row) => row.max_ms, format: ms },
      { label: "total", numeric: true, value: (row) => row.total_ms, format: ms },
      { label: "slow", numeric: true, value: (row) => row.slow_calls, format: integer },
    ],
    { sortBy: 5, empty: "No statements recorded" },
  );
  const rpcs = new Table(
    "table-rpcs",
    [
      { label: "service", value: (row) => row.service },
      { label: "method", value: (row) => row.method },
      { label: "p99", numeric: true, value: (row) => row.p99_ms, format: ms },
      { label: "rate", numeric: true, value: (row) => row.rate_per_second, format: perSecond },
    ],
    { sortBy: 2, empty: "No RPCs recorded" },
  );

  return (overview) => {
    resources.update(overview?.resources);
    statements.update(overview?.queries?.statements);
    rpcs.update(overview?.queries?.slowest_rpcs);
  };
}
