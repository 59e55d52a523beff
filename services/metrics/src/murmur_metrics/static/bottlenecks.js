// Bottlenecks: where a read and a write spend their time, hop by hop, as one
// bar per path whose segments are each hop's share.

import { DASH, isNumber, list, ms, percent } from "./format.js";
import { byId, el, setText } from "./dom.js";

const PALETTE_SIZE = 6;

function sentence(path, hops, slowest) {
  if (hops.length === 0) return `No ${path}s measured yet.`;
  if (!slowest) return `No single hop stands out on the ${path} path yet.`;
  const hop = hops.find((item) => item.hop === slowest);
  const figures = hop ? ` (p99 ${ms(hop.p99_ms)}, ${percent(hop.share)} of the path's time)` : "";
  return `Slowest hop on the ${path} path: ${slowest}${figures}.`;
}

function renderPath(path, data) {
  const hops = list(data?.hops).filter((hop) => hop && typeof hop === "object");
  // Shares should add up to 1; if they overshoot, scale them down to fit.
  const total = hops.reduce((sum, hop) => sum + (isNumber(hop.share) ? hop.share : 0), 0);
  const scale = total > 1 ? 1 / total : 1;
  const segments = hops.map((hop, i) => {
    const share = isNumber(hop.share) ? hop.share * scale : 0;
    return el(
      "span",
      {
        className: `segment tone-${(i % PALETTE_SIZE) + 1}`,
        title: `${hop.hop ?? DASH}: p99 ${ms(hop.p99_ms)}, ${percent(hop.share)}`,
        dataset: { slowest: String(hop.hop === data?.slowest) },
        style: { width: `${share * 100}%` },
      },
      // Wide enough segments carry their name; the legend names them all.
      share >= 0.12 ? String(hop.hop ?? DASH) : "",
    );
  });
  byId(`bottleneck-${path}`).replaceChildren(...segments);
  byId(`bottleneck-${path}-legend`).replaceChildren(
    ...hops.map((hop, i) =>
      el(
        "li",
        {},
        el("span", { className: `swatch tone-${(i % PALETTE_SIZE) + 1}` }),
        el("span", {}, String(hop.hop ?? DASH)),
        el("span", { className: "num" }, `${ms(hop.p99_ms)} · ${percent(hop.share)}`),
      ),
    ),
  );
  setText(`slowest-${path}`, sentence(path, hops, data?.slowest));
}

export function createBottlenecks() {
  return (overview) => {
    renderPath("read", overview?.bottlenecks?.read);
    renderPath("write", overview?.bottlenecks?.write);
  };
}
