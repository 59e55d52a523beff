// What every browser test launches: Debian's Chromium through playwright-core
// (which downloads no browser), with the flags every launch gets.

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Modules come from tools/node (npm ci --prefix tools/node), next to this file.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "package.json"));
export const { chromium } = require("playwright-core");

export const CHROMIUM_PATH = "/usr/bin/chromium";

// No sandbox (root in a container), no GPU, and nothing that talks to the
// network on its own (updates, sync, field trials), so the only traffic is
// what the test asks for. QUIC is off: the services speak HTTP/1.1 over TCP.
export const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
