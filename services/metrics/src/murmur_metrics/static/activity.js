// Activity: who is active, what they do per minute and today, how far posts
// fan out, and how many of each day's signups come back.

import { DASH, compact, integer, isNumber, list, percent } from "./format.js";
import { byId, el, facts, setFigure } from "./dom.js";
import { activityChart } from "./charts.js";
import { Table } from "./table.js";

// Known kinds first, in this order; a kind the backend adds later still
// shows, under its own name.
const KINDS = {
  "post.created": "posts",
  "post.deleted": "posts deleted",
  "follow.created": "follows",
  "follow.deleted": "unfollows",
  "user.created": "signups",
};

function ordered(record) {
  const keys = record && typeof record === "object" ? Object.keys(record) : [];
  const known = Object.keys(KINDS).filter((kind) => keys.includes(kind));
  return [...known, ...keys.filter((kind) => !(kind in KINDS)).sort()];
}

const label = (kind) => KINDS[kind] ?? kind;

function last(values) {
  const items = list(values);
  return items.length ? items[items.length - 1] : null;
}

function bar(value, max) {
  const share = isNumber(value) && max > 0 ? value / max : 0;
  return el("span", { className: "bar", style: { "--share": String(share) } });
}

// The day columns depend on the oldest cohort, so the table is rebuilt when
// that count changes.
function retentionTable(days) {
  const dayColumns = Array.from({ length: days }, (_, day) => ({
    label: `day ${day + 1}`,
    numeric: true,
    value: (row) => list(row.retained)[day],
    cell: (row) => {
      const ratio = list(row.retained)[day];
      return el(
        "span",
        { className: "heat", style: { "--v": String(isNumber(ratio) ? ratio : 0) } },
        percent(ratio),
      );
    },
  }));
  return new Table(
    "table-retention",
    [
      { label: "cohort", value: (row) => row.cohort },
      { label: "users", numeric: true, value: (row) => row.users, format: integer },
      ...dayColumns,
    ],
    { sortBy: 0, descending: true, empty: "No signups yet" },
  );
}

export function createActivity() {
  const chart = activityChart("chart-activity");
  // Bars are scaled to the biggest bucket of the snapshot being drawn.
  let fanoutMax = 0;
  const fanout = new Table(
    "table-fanout",
    [
      { label: "followers", value: (row) => row.bucket, sortable: false },
      {
        label: "posts",
        numeric: true,
        sortable: false,
        value: (row) => row.posts,
        format: integer,
      },
      {
        label: "",
        sortable: false,
        value: (row) => row.posts,
        cell: (row) => bar(row.posts, fanoutMax),
      },
    ],
    { empty: "No posts yet" },
  );
  let retention = null;
  let retentionDays = -1;

  return (overview) => {
    const analytics = overview?.analytics;
    const active = analytics?.active_users;
    setFigure("figure-dau", active?.daily, integer);
    setFigure("figure-wau", active?.weekly, integer);
    setFigure("figure-mau", active?.monthly, integer);

    const perMinute = analytics?.per_minute;
    const series = perMinute?.series ?? {};
    // The current minute, still filling up: what "posts / min" means here.
    setFigure("figure-posts-per-minute", last(series["post.created"]), integer);
    chart(
      perMinute?.minutes,
      ordered(series).map((kind) => [label(kind), series[kind]]),
    );

    const today = analytics?.today ?? {};
    const kinds = ordered(today);
    if (kinds.length)
      facts(
        "today-totals",
        kinds.map((kind) => [label(kind), compact(today[kind])]),
      );
    else facts("today-totals", [["events", DASH]]);

    const buckets = list(analytics?.fanout_sizes);
    fanoutMax = Math.max(0, ...buckets.map((row) => row?.posts).filter(isNumber));
    fanout.update(buckets);

    const cohorts = list(analytics?.retention);
    const days = Math.max(0, ...cohorts.map((row) => list(row?.retained).length));
    if (days !== retentionDays) {
      retention = retentionTable(days);
      retentionDays = days;
    }
    retention.update(cohorts);
    byId("table-retention").dataset.days = String(days);
  };
}
