// Load client of bench/bench_notifier.py: one Node process holding many
// WebSocket connections (the `ws` package from tools/node), driven by the
// benchmark over stdin/stdout, one JSON object a line each way.
//
// Commands (each answered by one line carrying the same "id"):
//   {"cmd":"connect","url":..,"mode":"notifier"|"baseline","users":[..],"tokens":[..],"concurrency":64}
//       open one connection per user and wait until each is subscribed:
//       notifier: subprotocols murmur.v1 + bearer.<jwt>, then {"type":"subscribe"}
//       and its "subscribed" reply; baseline: <url>?user=<id> and its "subscribed".
//   {"cmd":"reset"}   start a measured phase: counters, samples and CPU from zero
//   {"cmd":"count"}   cheap progress: events received so far in this phase
//   {"cmd":"stats"}   the phase: deliveries, duplicates, frames, latency
//                     percentiles, first/last receive time, this process's CPU
//   {"cmd":"close"}   close every connection (1000) and wait for the closes
//
// Latency of an event = receive time - its occurred_at (set by the publisher
// to the moment it handed the copy to NATS; same machine, same wall clock).
// The receive time is taken once per frame, on arrival in the 'message'
// handler, as performance.timeOrigin + performance.now() (sub-millisecond).

import { createRequire } from "node:module";
import path from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tools", "node", "package.json"));
const WebSocket = require("ws");

const nowMs = () => performance.timeOrigin + performance.now();

// occurred_at as protobuf's JSON mapping writes it: RFC 3339, UTC, with 0, 3,
// 6 or 9 fractional digits. Whole seconds are parsed once and cached.
const secondsCache = new Map();
function parseTimestamp(text) {
  const head = text.slice(0, 19);
  let base = secondsCache.get(head);
  if (base === undefined) {
    base = Date.parse(head + "Z");
    if (secondsCache.size > 4096) secondsCache.clear();
    secondsCache.set(head, base);
  }
  if (text.charCodeAt(19) !== 46 /* . */) return base;
  const digits = text.slice(20, text.length - 1);
  return base + (Number(digits) / 10 ** digits.length) * 1000;
}

class Samples {
  constructor() {
    this.values = new Float64Array(1 << 16);
    this.length = 0;
  }
  push(value) {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }
  summary() {
    const sorted = this.values.slice(0, this.length).sort();
    const rank = (q) => sorted[Math.max(0, Math.ceil((q / 100) * sorted.length) - 1)];
    if (sorted.length === 0) return { n: 0, p50: null, p90: null, p99: null, p999: null, max: null, min: null };
    return {
      n: sorted.length,
      min: sorted[0],
      p50: rank(50),
      p90: rank(90),
      p99: rank(99),
      p999: rank(99.9),
      max: sorted[sorted.length - 1],
    };
  }
}

// Samples a timer every LOOP_RESOLUTION_MS; a sample is the whole interval,
// so the delay is what exceeds it.
const LOOP_RESOLUTION_MS = 2;
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
loopDelay.enable();

let phase;
function newPhase() {
  loopDelay.reset();
  return {
    received: 0,
    duplicates: 0,
    frames: 0,
    other: 0,
    first: null,
    last: null,
    latency: new Samples(),
    cpu: process.cpuUsage(),
    started: nowMs(),
    closes: {},
    errors: 0,
  };
}
phase = newPhase();

const connections = new Set();

function onFrame(conn, data) {
  const now = nowMs();
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    phase.errors++;
    return;
  }
  if (message.type === "events") {
    phase.frames++;
    if (phase.first === null) phase.first = now;
    phase.last = now;
    for (const event of message.events) {
      if (event.seq <= conn.lastSeq) {
        phase.duplicates++;
        continue;
      }
      conn.lastSeq = event.seq;
      phase.received++;
      if (event.occurred_at) phase.latency.push(now - parseTimestamp(event.occurred_at));
    }
  } else if (message.type === "subscribed") {
    conn.lastSeq = Math.max(conn.lastSeq, message.seq ?? 0);
    conn.subscribed?.();
  } else {
    phase.other++; // ready, heartbeat, ...
  }
}

function open(url, mode, user, token, timeoutMs) {
  return new Promise((resolve, reject) => {
    const options = { perMessageDeflate: false, handshakeTimeout: timeoutMs };
    const ws =
      mode === "notifier"
        ? new WebSocket(url, ["murmur.v1", `bearer.${token}`], options)
        : new WebSocket(`${url}?user=${encodeURIComponent(user)}`, options);
    const conn = { ws, user, lastSeq: 0, subscribed: null };
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${user}: not subscribed within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.subscribed = () => {
      clearTimeout(timer);
      conn.subscribed = null;
      resolve(conn);
    };
    ws.on("open", () => {
      if (mode === "notifier") ws.send('{"type":"subscribe"}');
    });
    ws.on("message", (data) => onFrame(conn, data));
    ws.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on("close", (code) => {
      connections.delete(conn);
      phase.closes[code] = (phase.closes[code] ?? 0) + 1;
      clearTimeout(timer);
      reject(new Error(`${user}: closed (${code}) before subscribing`));
    });
  });
}

async function connect({ url, mode, users, tokens, concurrency = 64, timeout_ms = 30000 }) {
  const started = nowMs();
  let next = 0;
  let failed = 0;
  const firstErrors = [];
  async function worker() {
    while (next < users.length) {
      const i = next++;
      try {
        connections.add(await open(url, mode, users[i], tokens ? tokens[i] : null, timeout_ms));
      } catch (err) {
        failed++;
        if (firstErrors.length < 3) firstErrors.push(String(err.message ?? err));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, users.length) }, worker));
  return { open: connections.size, failed, errors: firstErrors, ms: nowMs() - started };
}

async function closeAll(timeoutMs = 15000) {
  const started = nowMs();
  const pending = [...connections].map(
    (conn) =>
      new Promise((resolve) => {
        if (conn.ws.readyState === WebSocket.CLOSED) return resolve();
        conn.ws.once("close", resolve);
        conn.ws.close(1000);
      }),
  );
  let timedOut = false;
  await Promise.race([
    Promise.all(pending),
    new Promise((resolve) =>
      setTimeout(() => {
        timedOut = true;
        resolve();
      }, timeoutMs),
    ),
  ]);
  for (const conn of connections) conn.ws.terminate();
  connections.clear();
  return { ms: nowMs() - started, timed_out: timedOut };
}

function stats() {
  const cpu = process.cpuUsage(phase.cpu);
  return {
    received: phase.received,
    duplicates: phase.duplicates,
    frames: phase.frames,
    other: phase.other,
    first_ms: phase.first,
    last_ms: phase.last,
    latency_ms: phase.latency.summary(),
    cpu_s: (cpu.user + cpu.system) / 1e6,
    wall_s: (nowMs() - phase.started) / 1000,
    loop_delay_p99_ms: Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
    loop_delay_max_ms: Math.max(0, loopDelay.max / 1e6 - LOOP_RESOLUTION_MS),
    closes: phase.closes,
    errors: phase.errors,
    open: connections.size,
    // Wall clock against timeOrigin + now(): what the latencies may be off by.
    clock_skew_ms: Date.now() - nowMs(),
  };
}

const handlers = {
  connect,
  close: () => closeAll(),
  reset: () => {
    phase = newPhase();
    return { open: connections.size };
  },
  count: () => ({
    received: phase.received,
    duplicates: phase.duplicates,
    last_ms: phase.last,
    open: connections.size,
  }),
  stats,
};

const reply = (line) => process.stdout.write(JSON.stringify(line) + "\n");

createInterface({ input: process.stdin, crlfDelay: Infinity })
  .on("line", async (line) => {
    let request;
    try {
      request = JSON.parse(line);
    } catch {
      reply({ error: "not JSON" });
      return;
    }
    const handler = handlers[request.cmd];
    if (handler === undefined) {
      reply({ id: request.id, error: `unknown command ${request.cmd}` });
      return;
    }
    try {
      reply({ id: request.id, ...(await handler(request)) });
    } catch (err) {
      reply({ id: request.id, error: String(err.stack ?? err) });
    }
  })
  .on("close", () => {
    for (const conn of connections) conn.ws.terminate();
    process.exit(0);
  });
