// The one place that reads an NSE's output. An NSE modifies the ONE notification of its push
// (NseResult.notifications holds one content): the newest message, with a subtitle such as
// "+2 more" and a count when the push brought several.
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
): { title: string; body: string; subtitle?: string; count?: number; threadId?: string }[] {
  return line.notifications.flatMap((n) =>
    n.kind === "alert"
      ? [
          {
            title: n.title,
            body: n.body,
            ...(n.subtitle ? { subtitle: n.subtitle } : {}),
            ...(n.count !== undefined ? { count: n.count } : {}),
            ...(n.threadId ? { threadId: n.threadId } : {}),
          },
        ]
      : [],
  );
}

/**
 * A notification the NSE posts itself, not its push's (`{ local: true, notifications }`): messages
 * stored while it lingered with no push of their own, after every push's content was handed over.
 */
export function parseNseLocalLine(text: string): NsePushLine["notifications"] | null {
  if (!text.startsWith("{")) return null;
  try {
    const v = JSON.parse(text) as { local?: unknown; notifications?: unknown };
    return v.local === true && Array.isArray(v.notifications)
      ? (v.notifications as NsePushLine["notifications"])
      : null;
  } catch {
    return null;
  }
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
