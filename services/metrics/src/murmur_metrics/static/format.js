// Number and time formatting. Every value from the API may be null or absent
// (a fresh stack knows nothing yet), so each formatter takes anything and
// answers DASH rather than "NaN" or "undefined".

export const DASH = "–";

export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function list(value) {
  return Array.isArray(value) ? value : [];
}

// Two significant digits, or the whole integer part: 12, 3.4, 0.42, 0.042.
function short(value) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  const digits = abs >= 10 ? 0 : abs >= 1 ? 1 : 1 - Math.floor(Math.log10(abs));
  return String(Number(value.toFixed(Math.min(digits, 12))));
}

const SUFFIXES = [
  [1e12, "T"],
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

export function compact(value) {
  if (!isNumber(value)) return DASH;
  const abs = Math.abs(value);
  for (const [size, suffix] of SUFFIXES) {
    // 999.95 would round to "1000": the next unit reads better.
    if (abs >= size * 0.9995) return short(value / size) + suffix;
  }
  return short(value);
}

export function integer(value) {
  return isNumber(value) ? compact(Math.round(value)) : DASH;
}

export function ms(value) {
  if (!isNumber(value)) return DASH;
  if (Math.abs(value) >= 1000) return `${short(value / 1000)} s`;
  return `${short(value)} ms`;
}

export function secondsAsMs(value) {
  return isNumber(value) ? ms(value * 1000) : DASH;
}

// Ratios arrive as 0..1.
export function percent(ratio) {
  if (!isNumber(ratio)) return DASH;
  const value = ratio * 100;
  const digits = value === 0 || Math.abs(value) >= 10 ? 0 : Math.abs(value) >= 1 ? 1 : 2;
  return `${Number(value.toFixed(digits))} %`;
}

export function perSecond(value) {
  return isNumber(value) ? `${compact(value)}/s` : DASH;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(value) {
  if (!isNumber(value)) return DASH;
  let size = value;
  let unit = 0;
  while (Math.abs(size) >= 1024 && unit < BYTE_UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? size : short(size)} ${BYTE_UNITS[unit]}`;
}

export function duration(seconds) {
  if (!isNumber(seconds)) return DASH;
  const s = Math.max(0, Math.floor(seconds));
  const parts = [
    [Math.floor(s / 86400), "d"],
    [Math.floor((s % 86400) / 3600), "h"],
    [Math.floor((s % 3600) / 60), "m"],
    [s % 60, "s"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  if (first === -1) return "0s";
  return parts
    .slice(first, first + 2)
    .map(([n, unit]) => `${n}${unit}`)
    .join(" ");
}

function parseTime(iso) {
  if (typeof iso !== "string" || iso === "") return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function clockTime(iso) {
  const date = parseTime(iso);
  return date ? date.toLocaleTimeString([], { hour12: false }) : DASH;
}

export function dateTime(iso) {
  const date = parseTime(iso);
  return date ? date.toLocaleString([], { hour12: false }) : DASH;
}

export function text(value) {
  if (value === null || value === undefined || value === "") return DASH;
  return String(value);
}
