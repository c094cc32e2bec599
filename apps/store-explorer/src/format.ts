/** Plain-text tables for people; the CLI's --json prints the same rows for scripts. */

export interface Column {
  key: string;
  title?: string;
  /** Cut longer values (with an ellipsis). */
  max?: number;
  format?: (value: unknown, row: Record<string, unknown>) => string;
}

export function cell(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value).replace(/\s+/g, " ");
}

function cut(text: string, max: number | undefined): string {
  if (max === undefined || text.length <= max) return text;
  return text.slice(0, Math.max(1, max - 1)) + "…";
}

export function table(rows: Record<string, unknown>[], columns: Column[]): string {
  if (rows.length === 0) return "(none)";
  const head = columns.map((c) => c.title ?? c.key);
  const body = rows.map((r) =>
    columns.map((c) => cut(c.format ? c.format(r[c.key], r) : cell(r[c.key]), c.max)),
  );
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

/** Epoch ms as "2026-11-24 02:20:11Z (3m ago)". */
export function time(now: number) {
  return (value: unknown): string => {
    if (typeof value !== "number" || value <= 0) return "-";
    const iso = new Date(value)
      .toISOString()
      .replace("T", " ")
      .replace(/\.\d+Z$/, "Z");
    return `${iso} (${relative(value - now)})`;
  };
}

export function relative(deltaMs: number): string {
  const abs = Math.abs(deltaMs);
  const text =
    abs < 1000
      ? `${abs}ms`
      : abs < 60_000
        ? `${Math.round(abs / 1000)}s`
        : abs < 3_600_000
          ? `${Math.round(abs / 60_000)}m`
          : abs < 86_400_000
            ? `${Math.round(abs / 3_600_000)}h`
            : `${Math.round(abs / 86_400_000)}d`;
  return deltaMs >= 0 ? `in ${text}` : `${text} ago`;
}
