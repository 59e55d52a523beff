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
//   {"cmd":"count"}   cheap progress: events received so far in this phase, and
//                     how many connections are open and how many are reconnecting
//   {"cmd":"stats"}   the phase: deliveries, duplicates, frames, latency
//                     percentiles, first/last receive time, this process's CPU,
//                     closes by code, reconnects, resyncs, replayed events
//   {"cmd":"close"}   close every connection (1000), cancel pending reconnects,
//                     and wait for the closes
//
// Reconnecting (notifier only), as a client of murmur.v1 should: when the
// server closes an established connection with 1001 (going away: reason
// {"retry_after_ms":..,"resume_after":..}), 4408 (too slow: {"resume_after":..})
// or the connection drops (1006; also 1011-1013), the client reconnects after
// the reason's retry_after_ms (already jittered by the server) or else
// RETRY_MIN_MS..RETRY_MAX_MS, and subscribes with "after" = the highest
// sequence it holds for that connection (events, subscribed/caught_up/resync
// positions) or the reason's resume_after if that is higher. Until the
// answer (caught_up, or resync: the position is gone, events were skipped)
// the connection counts as pending; events received meanwhile are replayed
// ones. A failed attempt is retried with backoff, up to MAX_ATTEMPTS in a row.
// The baseline has no resume: its connections are not reopened.
//
// Latency of an event = receive time - its occurred_at (set by the publisher
// to the moment it handed the copy to NATS; same machine, same wall clock).
// The receive time is taken once per frame, on arrival in the 'message'
// handler, as performance.timeOrigin + performance.now() (sub-millisecond).
// Replayed events count too (their latency is what the user waited).

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

// Server closes after which a client of murmur.v1 reconnects and resumes.
const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 4408]);
// Without a retry_after_ms in the reason: wait this long (uniformly jittered).
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 500;
// Failed attempts in a row: back off up to this, and give up after so many.
const BACKOFF_MAX_MS = 5000;
const MAX_ATTEMPTS = 20;

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
    liveLatency: new Samples(),
    cpu: process.cpuUsage(),
    started: nowMs(),
    closes: {},
    errors: 0,
    // Socket errors by message (what precedes a 1006), a few kinds at most.
    socket_errors: {},
    // Events received while resuming (before caught_up/resync): replayed.
    replayed: 0,
    // Reconnections made (a new socket opened), resumes answered.
    reconnect_attempts: 0,
    reconnects: 0,
    caught_up: 0,
    resyncs: 0,
    gave_up: 0,
  };
}
phase = newPhase();

// Every connection the client owns, open or waiting to reopen. A connection:
// {ws, user, token, url, mode, lastSeq, state, timer, attempts, resumeAfter,
//  stopping, subscribed}; state: "connecting" (first open), "live",
// "waiting" (a reconnect is scheduled), "resuming" (reopened, subscribe with
// after sent, no caught_up/resync yet), "closed" (for good).
const connections = new Set();

function countStates() {
  let open = 0;
  let pending = 0;
  for (const conn of connections) {
    if (conn.state === "live") open++;
    else if (conn.state === "waiting" || conn.state === "resuming") pending++;
  }
  return { open, pending };
}

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
    const replayed = conn.state === "resuming";
    for (const event of message.events) {
      if (event.seq <= conn.lastSeq) {
        phase.duplicates++;
        continue;
      }
      conn.lastSeq = event.seq;
      phase.received++;
      if (replayed) phase.replayed++;
      if (event.occurred_at) {
        const latency = now - parseTimestamp(event.occurred_at);
        phase.latency.push(latency);
        if (!replayed) phase.liveLatency.push(latency);
      }
    }
  } else if (message.type === "subscribed") {
    conn.lastSeq = Math.max(conn.lastSeq, message.seq ?? 0);
    if (conn.state === "connecting") conn.state = "live";
    conn.subscribed?.();
  } else if (message.type === "caught_up" || message.type === "resync") {
    // caught_up: every event up to seq was sent (replayed); resync: the
    // events after the position asked for are gone (or too many): skipped.
    conn.lastSeq = Math.max(conn.lastSeq, message.seq ?? 0);
    if (message.type === "resync") phase.resyncs++;
    else phase.caught_up++;
    if (conn.state === "resuming") {
      conn.state = "live";
      conn.attempts = 0;
      phase.reconnects++;
    }
  } else {
    phase.other++; // ready, heartbeat, ...
  }
}

function closeReason(reason) {
  if (!reason || reason.length === 0) return {};
  try {
    const parsed = JSON.parse(reason.toString());
    return parsed !== null && typeof parsed === "object" ? parsed : {};
  } catch {
    return {};
  }
}

const jitter = (low, high) => low + Math.random() * (high - low);

// Open conn's socket (first connection or a reconnect) and wire its handlers.
function openSocket(conn, timeoutMs) {
  const options = { perMessageDeflate: false, handshakeTimeout: timeoutMs };
  const ws =
    conn.mode === "notifier"
      ? new WebSocket(conn.url, ["murmur.v1", `bearer.${conn.token}`], options)
      : new WebSocket(`${conn.url}?user=${encodeURIComponent(conn.user)}`, options);
  conn.ws = ws;
  ws.on("open", () => {
    if (conn.mode !== "notifier") return;
    if (conn.state === "resuming") {
      ws.send(JSON.stringify({ type: "subscribe", after: conn.lastSeq }));
    } else {
      ws.send('{"type":"subscribe"}');
    }
  });
  ws.on("message", (data) => {
    if (conn.ws === ws) onFrame(conn, data);
  });
  ws.on("error", (err) => {
    // Always followed by 'close' (1006), which decides what happens next.
    const key = String(err.message ?? err).slice(0, 80);
    const errors = phase.socket_errors;
    if (key in errors || Object.keys(errors).length < 8) errors[key] = (errors[key] ?? 0) + 1;
  });
  ws.on("close", (code, reason) => {
    phase.closes[code] = (phase.closes[code] ?? 0) + 1;
    if (conn.ws === ws) onClosed(conn, code, closeReason(reason));
  });
  return ws;
}

function onClosed(conn, code, reason) {
  conn.ws = null;
  if (conn.stopping || conn.state === "closed") {
    conn.state = "closed";
    return;
  }
  if (conn.state === "connecting") {
    conn.state = "closed";
    conn.failed?.(new Error(`${conn.user}: closed (${code}) before subscribing`));
    return;
  }
  if (conn.mode !== "notifier" || !RECONNECT_CODES.has(code)) {
    conn.state = "closed";
    connections.delete(conn);
    return;
  }
  if (Number.isFinite(reason.resume_after)) {
    conn.lastSeq = Math.max(conn.lastSeq, reason.resume_after);
  }
  if (conn.state === "resuming") conn.attempts++;
  if (conn.attempts >= MAX_ATTEMPTS) {
    conn.state = "closed";
    phase.gave_up++;
    connections.delete(conn);
    return;
  }
  let delay;
  if (Number.isFinite(reason.retry_after_ms)) {
    delay = reason.retry_after_ms; // the server jittered it already
  } else if (conn.attempts === 0) {
    delay = jitter(RETRY_MIN_MS, RETRY_MAX_MS);
  } else {
    const base = Math.min(BACKOFF_MAX_MS, RETRY_MIN_MS * 2 ** conn.attempts);
    delay = jitter(base / 2, base);
  }
  conn.state = "waiting";
  conn.timer = setTimeout(() => {
    conn.timer = null;
    if (conn.stopping) return;
    conn.state = "resuming";
    phase.reconnect_attempts++;
    openSocket(conn, conn.timeoutMs);
  }, delay);
}

function open(url, mode, user, token, timeoutMs) {
  return new Promise((resolve, reject) => {
    const conn = {
      ws: null,
      user,
      token,
      url,
      mode,
      timeoutMs,
      lastSeq: 0,
      state: "connecting",
      timer: null,
      attempts: 0,
      stopping: false,
      subscribed: null,
      failed: null,
    };
    const timer = setTimeout(() => {
      conn.failed?.(new Error(`${user}: not subscribed within ${timeoutMs} ms`));
      conn.ws?.terminate();
    }, timeoutMs);
    conn.subscribed = () => {
      clearTimeout(timer);
      conn.subscribed = conn.failed = null;
      resolve(conn);
    };
    conn.failed = (err) => {
      clearTimeout(timer);
      conn.subscribed = conn.failed = null;
      conn.state = "closed";
      reject(err);
    };
    openSocket(conn, timeoutMs);
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
  return { open: countStates().open, failed, errors: firstErrors, ms: nowMs() - started };
}

async function closeAll(timeoutMs = 15000) {
  const started = nowMs();
  const pending = [];
  for (const conn of connections) {
    conn.stopping = true;
    if (conn.timer !== null) {
      clearTimeout(conn.timer);
      conn.timer = null;
    }
    const ws = conn.ws;
    if (ws === null || ws.readyState === WebSocket.CLOSED) continue;
    pending.push(
      new Promise((resolve) => {
        ws.once("close", resolve);
        ws.close(1000);
      }),
    );
  }
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
  for (const conn of connections) conn.ws?.terminate();
  connections.clear();
  return { ms: nowMs() - started, timed_out: timedOut };
}

function stats() {
  const cpu = process.cpuUsage(phase.cpu);
  const { open, pending } = countStates();
  return {
    received: phase.received,
    duplicates: phase.duplicates,
    frames: phase.frames,
    other: phase.other,
    first_ms: phase.first,
    last_ms: phase.last,
    latency_ms: phase.latency.summary(),
    live_latency_ms: phase.liveLatency.summary(),
    cpu_s: (cpu.user + cpu.system) / 1e6,
    wall_s: (nowMs() - phase.started) / 1000,
    loop_delay_p99_ms: Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
    loop_delay_max_ms: Math.max(0, loopDelay.max / 1e6 - LOOP_RESOLUTION_MS),
    closes: phase.closes,
    errors: phase.errors,
    socket_errors: phase.socket_errors,
    replayed: phase.replayed,
    reconnect_attempts: phase.reconnect_attempts,
    reconnects: phase.reconnects,
    caught_up: phase.caught_up,
    resyncs: phase.resyncs,
    gave_up: phase.gave_up,
    open,
    pending,
    // Wall clock against timeOrigin + now(): what the latencies may be off by.
    clock_skew_ms: Date.now() - nowMs(),
  };
}

const handlers = {
  connect,
  close: () => closeAll(),
  reset: () => {
    phase = newPhase();
    return countStates();
  },
  count: () => ({
    received: phase.received,
    duplicates: phase.duplicates,
    last_ms: phase.last,
    ...countStates(),
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
    for (const conn of connections) {
      conn.stopping = true;
      conn.ws?.terminate();
    }
    process.exit(0);
  });
