// Entry point: builds each section once, then redraws them in place for every
// overview snapshot.

import { clockTime } from "./format.js";
import { byId } from "./dom.js";
import { createActivity } from "./activity.js";
import { createBottlenecks } from "./bottlenecks.js";
import { createHealth } from "./health.js";
import { follow } from "./live.js";
import { createOperator } from "./operator.js";
import { createPerformance } from "./performance.js";
import { createWorkload } from "./workload.js";

const sections = [
  createHealth(),
  createActivity(),
  createPerformance(),
  createBottlenecks(),
  createWorkload(),
];

function render(overview) {
  const stamp = byId("generated-at");
  stamp.textContent = clockTime(overview?.generated_at);
  stamp.dateTime = typeof overview?.generated_at === "string" ? overview.generated_at : "";
  // One section's bad data must not blank the others; the error still
  // reaches the console, where the browser check looks for it.
  for (const section of sections) {
    try {
      section(overview);
    } catch (error) {
      console.error("dashboard section failed to render", error);
    }
  }
}

const LABELS = {
  connecting: "connecting",
  live: "live",
  reconnecting: "reconnecting",
  offline: "offline",
};

function showState(state) {
  const indicator = byId("live-indicator");
  indicator.dataset.state = state;
  indicator.textContent = LABELS[state] ?? state;
}

createOperator();
// An empty snapshot first: every section shows its "no data" state at once.
render({});
follow(render, showState);
