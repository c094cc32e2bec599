// The one place that reads an NSE's output: the merge of "one notification per push" (another
// change to NseResult) only has to change this function.
import type { NotificationContent } from "@lichen/schema";

/** One line of `lichen-chat nse --stdin`: a push's result. */
export interface NsePushLine {
  pushId: string;
  outcome: string;
  notifications: NotificationContent[];
  stream?: "resumed" | "new" | null;
  mamCatchup?: boolean;
  holder?: string;
}

/** What the device shows for one push the NSE handled: its alerts (none when it silenced it). */
export function displayedContents(
  line: NsePushLine,
): { title: string; body: string; threadId?: string }[] {
  return line.notifications.flatMap((n) =>
    n.kind === "alert"
      ? [{ title: n.title, body: n.body, ...(n.threadId ? { threadId: n.threadId } : {}) }]
      : [],
  );
}

export function parseNsePushLine(text: string): NsePushLine | null {
  if (!text.startsWith("{")) return null;
  try {
    const v = JSON.parse(text) as Partial<NsePushLine>;
    if (typeof v.pushId !== "string" || !Array.isArray(v.notifications)) return null;
    return v as NsePushLine;
  } catch {
    return null;
  }
}
