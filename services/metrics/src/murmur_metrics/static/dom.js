// DOM helpers. Data only ever reaches the page as text nodes and attributes,
// never as markup, so a hostile statement or hop name cannot inject anything.

import { DASH, isNumber } from "./format.js";

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node;
}

// el("td", {className: "num", title: "..."}, "text", childNode, ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style")
      for (const [k, v] of Object.entries(value)) node.style.setProperty(k, v);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function setText(id, value) {
  byId(id).textContent = value;
}

// A figure shows its formatted text; data-value keeps the raw number for
// scripts (the browser check), empty when unknown.
export function setFigure(id, value, format) {
  const node = byId(id);
  node.textContent = format(value);
  node.dataset.value = isNumber(value) ? String(value) : "";
}

// Status words become a class the stylesheet colours (ok / bad / unknown).
const STATUS_TONE = {
  serving: "ok",
  up: "ok",
  not_serving: "bad",
  down: "bad",
  unreachable: "bad",
  unknown: "unknown",
};

export function tone(status) {
  return STATUS_TONE[status] ?? "unknown";
}

export function setStatus(id, status) {
  const node = byId(id);
  node.textContent = status ? String(status).replaceAll("_", " ") : DASH;
  node.dataset.tone = tone(status);
}

// A <dl> of [term, text] pairs, each pair in a <div> the stylesheet lays out.
export function facts(id, pairs) {
  byId(id).replaceChildren(
    ...pairs.map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))),
  );
}
