// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core,
// which downloads no browser) watching the metrics dashboard update itself:
// the page must draw its charts, then show new posts from the live stream
// without a reload, and stay free of script and console errors.
//
// Usage: node dashboard_check.mjs <dashboard_url> <screenshot_path>
//   CHROMIUM=/path/to/chromium overrides /usr/bin/chromium.
//
// Conversation (one JSON object per line):
//   stdout  {"stage":"ready","posts_per_minute":n,...}   charts drawn
//   stdin   {"at_least": n}        the caller made posts; wait for this value
//                                  (optional "timeout_ms", default 30000)
//   stdout  {"stage":"done","posts_per_minute":n,"reloaded":false,...}
//           after a full-page screenshot at 1280x900 to <screenshot_path>
//           and one at 390x844 to <name>-phone<ext> beside it
// Any failure: {"stage":"error","message":...} and exit status 1.
//

import path from "node:path";
import readline from "node:readline";

import { CHROMIUM_PATH, LAUNCH_ARGS, chromium } from "./chromium.mjs";

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const READY_TIMEOUT_MS = 30_000;
const UPDATE_TIMEOUT_MS = 30_000;
// The caller creates posts between "ready" and its answer.
const STDIN_TIMEOUT_MS = 300_000;

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

function phonePath(screenshot) {
  const ext = path.extname(screenshot) || ".png";
  return path.join(
    path.dirname(screenshot),
    `${path.basename(screenshot, path.extname(screenshot))}-phone${ext}`,
  );
}

function readLine(timeoutMs) {
  const lines = readline.createInterface({ input: process.stdin });
  let timer;
  return new Promise((resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no line on stdin within ${timeoutMs} ms`)),
      timeoutMs,
    );
    // Settled before close(), whose own "close" event would otherwise win.
    lines.once("line", resolve);
    lines.once("close", () => reject(new Error("stdin closed before the expected line")));
  }).finally(() => {
    clearTimeout(timer);
    lines.close();
  });
}

// Element ids read from the page, all here: tests/metrics/test_static_assets.py
// reads this block and asserts index.html has each of them.
const IDS = {
  activityChart: "chart-activity",
  requestsChart: "chart-requests",
  postsPerMinute: "figure-posts-per-minute",
  healthBadges: "health-badges",
  alertsFiring: "alerts-firing",
  live: "live-indicator",
  generatedAt: "generated-at",
  slowestRead: "slowest-read",
  slowestWrite: "slowest-write",
  endpoints: "table-endpoints",
  resources: "table-resources",
  queries: "table-queries",
};

// Runs in the page (so it gets the ids as an argument): what the dashboard
// shows right now.
function snapshot(ids) {
  const byId = (id) => document.getElementById(id);
  const chart = (id) => ({
    canvas: Boolean(byId(id)?.querySelector(".uplot canvas")),
    points: Number(byId(id)?.dataset.points ?? 0),
  });
  const rows = (id) => byId(id)?.querySelectorAll("tbody tr:not(:has(td.empty))").length ?? 0;
  const figure = byId(ids.postsPerMinute);
  const raw = figure?.dataset.value ?? "";
  return {
    posts_per_minute: raw === "" ? null : Number(raw),
    posts_per_minute_text: figure?.textContent ?? null,
    activity: chart(ids.activityChart),
    requests: chart(ids.requestsChart),
    health_badges: byId(ids.healthBadges)?.querySelectorAll(".badge[data-status]").length ?? 0,
    alerts_firing: byId(ids.alertsFiring)?.dataset.count ?? null,
    live: byId(ids.live)?.dataset.state ?? null,
    generated_at: byId(ids.generatedAt)?.getAttribute("datetime") ?? null,
    slowest_read: byId(ids.slowestRead)?.textContent ?? null,
    slowest_write: byId(ids.slowestWrite)?.textContent ?? null,
    endpoint_rows: rows(ids.endpoints),
    resource_rows: rows(ids.resources),
    query_rows: rows(ids.queries),
    marker: window.__marker ?? null,
  };
}

// In the page: both charts drawn, and at least one of them has data.
function chartsReady(ids) {
  const chart = (id) => {
    const node = document.getElementById(id);
    return {
      canvas: Boolean(node?.querySelector(".uplot canvas")),
      points: Number(node?.dataset.points ?? 0),
    };
  };
  const activity = chart(ids.activityChart);
  const requests = chart(ids.requestsChart);
  return activity.canvas && requests.canvas && (activity.points > 0 || requests.points > 0);
}

// In the page.
function postsAtLeast({ ids, minimum }) {
  const raw = document.getElementById(ids.postsPerMinute)?.dataset.value ?? "";
  return raw !== "" && Number(raw) >= minimum;
}

function problems(errors) {
  if (errors.length) throw new Error(`page errors: ${JSON.stringify(errors)}`);
}

async function run(url, screenshot) {
  const origin = new URL(url).origin;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || CHROMIUM_PATH,
    headless: true,
    args: LAUNCH_ARGS,
  });
  try {
    const page = await browser.newPage({ viewport: DESKTOP });
    const errors = [];
    page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(`console: ${message.text()}`);
    });
    // Everything must come from the service itself.
    page.on("request", (request) => {
      const target = new URL(request.url());
      if (/^https?:$/.test(target.protocol) && target.origin !== origin) {
        errors.push(`request to another origin: ${request.url()}`);
      }
    });
    let navigations = 0;
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });

    const landed = await page.goto(url, { waitUntil: "load", timeout: READY_TIMEOUT_MS });
    if (!landed || !landed.ok())
      throw new Error(`GET ${url} answered ${landed ? landed.status() : "nothing"}`);
    try {
      await page.waitForFunction(chartsReady, IDS, { timeout: READY_TIMEOUT_MS, polling: 200 });
    } catch {
      const { activity, requests, live } = await page.evaluate(snapshot, IDS);
      problems(errors);
      throw new Error(
        `charts not drawn with data: ${JSON.stringify({ activity, requests, live })}`,
      );
    }
    const marker = `check-${Date.now()}`;
    await page.evaluate((value) => {
      window.__marker = value;
    }, marker);
    const { marker: _, ...ready } = await page.evaluate(snapshot, IDS);
    problems(errors);
    emit({ stage: "ready", ...ready });

    const answer = JSON.parse(await readLine(STDIN_TIMEOUT_MS));
    const minimum = Number(answer?.at_least);
    if (!Number.isFinite(minimum))
      throw new Error(`expected {"at_least": n} on stdin, got ${JSON.stringify(answer)}`);
    try {
      await page.waitForFunction(
        postsAtLeast,
        { ids: IDS, minimum },
        {
          timeout: Number(answer.timeout_ms) || UPDATE_TIMEOUT_MS,
          polling: 200,
        },
      );
    } catch {
      const seen = (await page.evaluate(snapshot, IDS)).posts_per_minute_text;
      problems(errors);
      throw new Error(
        `#${IDS.postsPerMinute} stayed at ${JSON.stringify(seen)}, wanted >= ${minimum}`,
      );
    }
    const updated = await page.evaluate(snapshot, IDS);
    const reloaded = updated.marker !== marker || navigations !== 1;
    if (reloaded) throw new Error("the page reloaded or navigated while waiting for the update");

    await page.screenshot({ path: screenshot, fullPage: true });
    await page.setViewportSize(PHONE);
    // Charts follow their containers through ResizeObserver: give them a
    // moment to settle at the new width before the picture.
    await page.waitForFunction(
      (width) =>
        [...document.querySelectorAll(".chart .uplot")].every(
          (u) => u.getBoundingClientRect().width <= width,
        ),
      PHONE.width,
      { timeout: 5_000, polling: 100 },
    );
    const phone = phonePath(screenshot);
    await page.screenshot({ path: phone, fullPage: true });
    // Wide tables scroll inside their boxes; the page itself must not.
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    if (overflow > 0) throw new Error(`at ${PHONE.width} px the page is ${overflow} px too wide`);
    const after = await page.evaluate(snapshot, IDS);
    problems(errors);
    emit({
      stage: "done",
      posts_per_minute: updated.posts_per_minute,
      reloaded: after.marker !== marker,
      live: after.live,
      screenshots: [screenshot, phone],
    });
  } finally {
    await browser.close();
  }
}

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  emit({
    stage: "error",
    message: "usage: node dashboard_check.mjs <dashboard_url> <screenshot_path>",
  });
  process.exit(1);
}
try {
  await run(url, screenshot);
  process.exit(0);
} catch (error) {
  emit({ stage: "error", message: String(error?.message ?? error) });
  process.exit(1);
}
