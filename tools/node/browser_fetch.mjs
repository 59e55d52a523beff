// Headless Chromium (the Debian package at /usr/bin/chromium, driven by the
// npm package playwright-core, which downloads no browser of its own) running
// fetch() in a page: what a real browser sends, negotiates and decodes.
// tests/e2e/test_gateway_clients.py drives it.
//
// Usage: node browser_fetch.mjs < spec.json
//
// spec (JSON on stdin, so bearer tokens never show in a process list):
//   {
//     "executable": CHROMIUM_PATH,
//     "userDataDir": "/tmp/...",          fresh and empty: no cache, no cookies
//     "page": "http://127.0.0.1:8080/healthz",
//                                         navigated first, so the fetches are
//                                         same-origin (every response header is
//                                         readable from the page, no CORS)
//     "acceptEncoding": null | "gzip, deflate, br",
//                                         null: the browser's own Accept-Encoding;
//                                         a string replaces it (CDP extra headers;
//                                         page scripts cannot set it: a forbidden
//                                         header name)
//     "args": ["--ignore-certificate-errors", ...],   added to the launch flags
//     "fetches": [{"path": "/v1/...", "headers": {...}, "cache": "no-store"}],
//     "timeoutMs": 30000
//   }
//
// stdout, one JSON object:
//   {
//     "browser": "156.0.8078.114",
//     "navigation": {"status": 200, "sent": {request headers on the wire}},
//     "fetches": [{
//       "path": "/v1/...",
//       "status": 200, "headers": {...}, "text": "...", "json": {...} | null,
//                                         what the page saw: headers as the Fetch
//                                         API exposes them, the body as the
//                                         browser decoded it
//       "timing": {"encodedBodySize": n, "decodedBodySize": n, "transferSize": n},
//                                         Resource Timing: bytes on the wire vs. after decoding
//       "sent": {...},                    the request headers on the wire (Playwright's
//                                         allHeaders(): from CDP's ...ExtraInfo events,
//                                         i.e. with what the network stack added after
//                                         the page, Accept-Encoding among them)
//       "wire": {"status": 200, "headers": {...}, "bodySize": n},
//                                         the response as received, before decoding
//       "error": "..."                    only when the fetch failed
//     }]
//   }
// Exit status 0 when every step ran (whatever the statuses), 1 with the reason
// on stderr otherwise, 2 on the overall timeout.

import { CHROMIUM_PATH, LAUNCH_ARGS, chromium } from "./chromium.mjs";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function lowerKeys(headers) {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

// The Playwright request for the next fetch of `url` from the page: settles on
// requestfinished or requestfailed, whichever comes, so a failed fetch cannot
// leave us waiting.
function nextRequest(page, url, timeoutMs) {
  return new Promise((resolve, reject) => {
    const done = (request) => {
      if (request.url() !== url || request.resourceType() !== "fetch") return;
      page.off("requestfinished", done);
      page.off("requestfailed", done);
      clearTimeout(timer);
      resolve(request);
    };
    const timer = setTimeout(() => {
      page.off("requestfinished", done);
      page.off("requestfailed", done);
      reject(new Error(`no request event for ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    page.on("requestfinished", done);
    page.on("requestfailed", done);
  });
}

// Runs in the page.
async function pageFetch({ path: target, headers, cache }) {
  try {
    const response = await fetch(target, { headers, cache });
    const text = await response.text();
    const seen = {};
    response.headers.forEach((value, name) => {
      seen[name] = value;
    });
    // The entry for this exact fetch: the last one with its URL.
    const entries = performance.getEntriesByName(response.url, "resource");
    const entry = entries[entries.length - 1];
    const timing = entry
      ? {
          encodedBodySize: entry.encodedBodySize,
          decodedBodySize: entry.decodedBodySize,
          transferSize: entry.transferSize,
        }
      : null;
    return { status: response.status, headers: seen, text, timing };
  } catch (error) {
    return { error: String(error) };
  }
}

async function run(spec) {
  const timeoutMs = spec.timeoutMs ?? 30000;
  const context = await chromium.launchPersistentContext(spec.userDataDir, {
    executablePath: spec.executable ?? CHROMIUM_PATH,
    headless: true,
    args: [...LAUNCH_ARGS, ...(spec.args ?? [])],
    extraHTTPHeaders: spec.acceptEncoding ? { "Accept-Encoding": spec.acceptEncoding } : undefined,
    timeout: timeoutMs,
  });
  try {
    const browser = context.browser();
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(timeoutMs);
    const landed = await page.goto(spec.page, { waitUntil: "load" });
    if (landed === null) throw new Error(`navigating to ${spec.page} gave no response`);
    const out = {
      browser: browser ? browser.version() : null,
      navigation: {
        status: landed.status(),
        sent: lowerKeys(await landed.request().allHeaders()),
      },
      fetches: [],
    };
    for (const step of spec.fetches ?? []) {
      const url = new URL(step.path, page.url()).href;
      const requested = nextRequest(page, url, timeoutMs);
      const seen = await page.evaluate(pageFetch, {
        path: step.path,
        headers: step.headers ?? {},
        cache: step.cache ?? "no-store",
      });
      const request = await requested;
      const response = await request.response();
      const sizes = response ? await request.sizes() : null;
      let json = null;
      if (seen.text !== undefined && /json/.test(seen.headers["content-type"] ?? "")) {
        json = JSON.parse(seen.text);
      }
      out.fetches.push({
        path: step.path,
        ...seen,
        json,
        sent: lowerKeys(await request.allHeaders()),
        wire: response
          ? {
              status: response.status(),
              headers: lowerKeys(await response.allHeaders()),
              bodySize: sizes.responseBodySize,
            }
          : null,
        failure: request.failure()?.errorText ?? null,
      });
    }
    return out;
  } finally {
    await context.close();
  }
}

const spec = await readStdin();
// Belt and braces next to the caller's own timeout: never outlive the test.
const overall = setTimeout(
  () => {
    process.stderr.write("browser_fetch.mjs: overall timeout\n");
    process.exit(2);
  },
  (spec.timeoutMs ?? 30000) * 2,
);
try {
  process.stdout.write(JSON.stringify(await run(spec)) + "\n");
  clearTimeout(overall);
} catch (error) {
  process.stderr.write(`browser_fetch.mjs: ${error?.stack ?? error}\n`);
  process.exit(1);
}
