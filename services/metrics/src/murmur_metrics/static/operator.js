// The operator panel: calls that need the operator's bearer token. The token
// lives in sessionStorage (gone with the tab), travels only in the
// Authorization header, and is never put in a URL or logged.

import { DASH, compact, integer, isNumber, list, text } from "./format.js";
import { byId, el } from "./dom.js";
import { Table } from "./table.js";

const TOKEN_KEY = "murmur.metrics.operatorToken";
const MIN_SECONDS = 1;
const MAX_SECONDS = 30;

const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) ?? "",
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// API errors are problem+json; anything else still gets a readable line.
async function problem(response) {
  const fallback = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  if (!/json/.test(response.headers.get("content-type") ?? "")) return fallback;
  try {
    const body = await response.json();
    if (body?.title && body?.detail) return `${body.title}: ${body.detail}`;
    return body?.title || body?.detail || fallback;
  } catch {
    return fallback;
  }
}

async function call(path, options = {}) {
  const bearer = token.get();
  if (!bearer) throw new Error("Enter an operator token first.");
  let response;
  try {
    response = await fetch(path, {
      ...options,
      cache: "no-store",
      headers: { ...options.headers, Authorization: `Bearer ${bearer}` },
    });
  } catch {
    throw new Error("The metrics service did not answer.");
  }
  if (!response.ok) throw new Error(await problem(response));
  return response;
}

function targetName(target) {
  return `${text(target?.service)} ${target?.instance ?? ""}`.trim();
}

function showError(id, message) {
  const node = byId(id);
  node.textContent = message ?? "";
  node.hidden = !message;
}

function topAuthors() {
  const table = new Table(
    "table-top-authors",
    [
      { label: "#", numeric: true, value: (row) => row.rank, format: integer },
      { label: "user", value: (row) => row.user_id },
      { label: "reach", numeric: true, value: (row) => row.reach, format: compact },
      { label: "posts", numeric: true, value: (row) => row.posts, format: compact },
    ],
    { empty: "Needs an operator token" },
  );
  const load = async () => {
    showError("top-authors-error", null);
    try {
      const body = await (await call("/api/v1/analytics/top-authors?days=7&limit=10")).json();
      table.empty = "No posts in the last 7 days";
      table.update(list(body?.authors).map((row, i) => ({ ...row, rank: i + 1 })));
    } catch (error) {
      table.update([]);
      showError("top-authors-error", error.message);
    }
  };
  const reset = () => {
    table.empty = "Needs an operator token";
    table.update([]);
    showError("top-authors-error", null);
  };
  byId("top-authors-refresh").addEventListener("click", load);
  return { load, reset };
}

function profiles() {
  const select = byId("profile-target");
  const seconds = byId("profile-seconds");
  const start = byId("profile-start");
  const status = byId("profile-status");
  const view = byId("profile-view");
  const download = byId("profile-download");
  let targets = [];

  const setTargets = (items) => {
    targets = list(items).filter((t) => t && typeof t === "object");
    select.replaceChildren(
      ...(targets.length
        ? targets.map((t, i) => el("option", { value: String(i) }, targetName(t)))
        : [el("option", { value: "" }, token.get() ? "no targets" : "needs a token")]),
    );
    start.disabled = targets.length === 0;
  };

  const clearResult = () => {
    if (download.href.startsWith("blob:")) URL.revokeObjectURL(download.href);
    download.removeAttribute("href");
    download.hidden = true;
    view.hidden = true;
    view.removeAttribute("srcdoc");
  };

  const loadTargets = async () => {
    showError("profile-error", null);
    try {
      setTargets((await (await call("/api/v1/profiles/targets")).json())?.targets);
    } catch (error) {
      setTargets([]);
      showError("profile-error", error.message);
    }
  };

  const record = async (event) => {
    event.preventDefault();
    const target = targets[Number(select.value)];
    const wanted = Math.round(Number(seconds.value));
    if (!target) return;
    if (!(wanted >= MIN_SECONDS && wanted <= MAX_SECONDS)) {
      showError("profile-error", `Seconds must be between ${MIN_SECONDS} and ${MAX_SECONDS}.`);
      return;
    }
    showError("profile-error", null);
    clearResult();
    start.disabled = true;
    status.textContent = `Recording ${wanted} s on ${targetName(target)}…`;
    try {
      const created = await (
        await call("/api/v1/profiles", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            service: target.service,
            instance: target.instance,
            seconds: wanted,
          }),
        })
      ).json();
      // Both views need the token too, so they are fetched here rather than
      // linked: the flame view into a sandboxed frame, the JSON as a blob.
      const [html, speedscope] = await Promise.all([
        call(created.html_url).then((r) => r.text()),
        call(created.speedscope_url).then((r) => r.blob()),
      ]);
      view.srcdoc = html;
      view.hidden = false;
      download.href = URL.createObjectURL(speedscope);
      download.download = `profile-${created.id ?? "latest"}.speedscope.json`;
      download.hidden = false;
      const length = isNumber(created.seconds) ? `${created.seconds} s` : DASH;
      status.textContent = `Profile ${text(created.id)}: ${targetName(created)}, ${length}`;
    } catch (error) {
      status.textContent = "";
      showError("profile-error", error.message);
    } finally {
      start.disabled = targets.length === 0;
    }
  };

  byId("profile-form").addEventListener("submit", record);
  const reset = () => {
    setTargets([]);
    clearResult();
    status.textContent = "";
    showError("profile-error", null);
  };
  reset();
  return { load: loadTargets, reset };
}

export function createOperator() {
  const panel = byId("operator-panel");
  const input = byId("operator-token");
  const state = byId("operator-state");
  const authors = topAuthors();
  const profile = profiles();
  let loaded = false;

  const refresh = () => {
    state.textContent = token.get() ? "token set for this tab" : "no token";
    if (!token.get()) {
      loaded = false;
      authors.reset();
      profile.reset();
      return;
    }
    // Nothing is asked for until an operator opens the panel.
    if (panel.open && !loaded) {
      loaded = true;
      authors.load();
      profile.load();
    }
  };

  byId("operator-token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    token.set(value);
    loaded = false;
    refresh();
  });
  byId("operator-forget").addEventListener("click", () => {
    token.clear();
    input.value = "";
    refresh();
  });
  panel.addEventListener("toggle", refresh);
  refresh();
}
