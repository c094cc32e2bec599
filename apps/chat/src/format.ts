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
  /** The message's file (XEP-0363/OOB), when it has one. */
  file?: {
    state: string;
    size: number | null;
    mimeType: string | null;
    localPath: string | null;
    error: string | null;
  };
  /** Message type: groupchat lines read "room: nick: body". */
  type?: string;
}

/** `2026-11-24T06:01:02Z  bob@localhost: hi` (incoming) or `… → bob@localhost: hi [acked]`. */
export function formatMessage(m: MessageLine): string {
  const body = (m.body ?? "(no body)").replace(/\n/g, "\n    ") + fileNote(m);
  if (m.type === "groupchat" && m.direction === "in") {
    const slash = m.fromJid.indexOf("/");
    const nick = slash >= 0 ? m.fromJid.slice(slash + 1) : "(room)";
    return `${isoTime(m.sentAt)}  ${m.chatJid}: ${nick}: ${body}`;
  }
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

/** ` [file image/jpeg 5.0 MB, remote: lichen-chat download 12]` and the like. */
function fileNote(m: MessageLine): string {
  const f = m.file;
  if (!f) return "";
  const facts = [f.mimeType, f.size !== null ? `${(f.size / 1048576).toFixed(1)} MB` : null]
    .filter(Boolean)
    .join(" ");
  const state =
    f.state === "remote"
      ? `not downloaded: lichen-chat download ${m.id}${f.error ? ` (last try: ${f.error})` : ""}`
      : f.state === "failed"
        ? `failed: ${f.error ?? "unknown error"}`
        : f.state;
  return ` [file${facts ? ` ${facts}` : ""}, ${state}]`;
}
