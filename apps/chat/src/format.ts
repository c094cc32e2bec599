/** Local-time-independent stamps: ISO 8601 UTC, seconds precision. */
export function isoTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface MessageLine {
  id: number;
  direction: "in" | "out";
  chatJid: string;
  fromJid: string;
  body: string | null;
  deliveryState: string;
  sentAt: number;
  originId: string | null;
  stanzaId: string | null;
}

/** `2026-11-24T06:01:02Z  bob@localhost: hi` (incoming) or `… → bob@localhost: hi [acked]`. */
export function formatMessage(m: MessageLine): string {
  const body = (m.body ?? "(no body)").replace(/\n/g, "\n    ");
  return m.direction === "in"
    ? `${isoTime(m.sentAt)}  ${m.fromJid}: ${body}`
    : `${isoTime(m.sentAt)}  → ${m.chatJid}: ${body} [${m.deliveryState}]`;
}

/** Left-aligned columns separated by two spaces. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
