// A table rebuilt from rows on every snapshot. Clicking a numeric or text
// header sorts by it; the choice survives updates, since operators click
// while the data keeps streaming in.

import { DASH, isNumber, list } from "./format.js";
import { byId, el } from "./dom.js";

// column: {label, value(row) -> raw (sort key and default text),
//          format(raw) -> string, numeric, title(row) -> string,
//          cell(row) -> Node (replaces the text), sortable (default true)}
export class Table {
  constructor(id, columns, { sortBy = null, descending = true, empty = "No data yet" } = {}) {
    this.table = byId(id);
    this.columns = columns;
    this.sortBy = sortBy;
    this.descending = descending;
    this.empty = empty;
    this.rows = [];
    this.body = el("tbody");
    this.table.replaceChildren(el("thead", {}, this.header()), this.body);
    this.render();
  }

  header() {
    return el(
      "tr",
      {},
      ...this.columns.map((column, index) => {
        const th = el("th", { scope: "col", className: column.numeric ? "num" : "" });
        if (column.sortable === false) {
          th.textContent = column.label;
          return th;
        }
        const button = el("button", { type: "button", className: "sort" }, column.label);
        button.addEventListener("click", () => this.sort(index));
        th.append(button);
        return th;
      }),
    );
  }

  sort(index) {
    if (this.sortBy === index) this.descending = !this.descending;
    else {
      this.sortBy = index;
      // Numbers are most interesting largest first, names A to Z.
      this.descending = Boolean(this.columns[index].numeric);
    }
    this.render();
  }

  update(rows) {
    this.rows = list(rows).filter((row) => row !== null && typeof row === "object");
    this.render();
  }

  sorted() {
    if (this.sortBy === null) return this.rows;
    const value = this.columns[this.sortBy].value;
    const sign = this.descending ? -1 : 1;
    return [...this.rows].sort((a, b) => {
      const x = value(a);
      const y = value(b);
      // Unknowns last, whichever the direction.
      const xMissing = x === null || x === undefined || (typeof x === "number" && !isNumber(x));
      const yMissing = y === null || y === undefined || (typeof y === "number" && !isNumber(y));
      if (xMissing || yMissing) return xMissing - yMissing;
      if (typeof x === "number" && typeof y === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y));
    });
  }

  render() {
    this.table.querySelectorAll("thead th").forEach((th, index) => {
      if (index === this.sortBy)
        th.setAttribute("aria-sort", this.descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
    if (this.rows.length === 0) {
      this.body.replaceChildren(
        el("tr", {}, el("td", { colSpan: this.columns.length, className: "empty" }, this.empty)),
      );
      return;
    }
    this.body.replaceChildren(...this.sorted().map((row) => this.row(row)));
  }

  row(row) {
    return el(
      "tr",
      {},
      ...this.columns.map((column) => {
        const td = el("td", { className: column.numeric ? "num" : "" });
        if (column.cell) td.append(column.cell(row));
        else {
          const raw = column.value(row);
          td.textContent = column.format
            ? column.format(raw)
            : raw == null || raw === ""
              ? DASH
              : String(raw);
        }
        if (column.title) td.title = column.title(row) ?? "";
        return td;
      }),
    );
  }
}
