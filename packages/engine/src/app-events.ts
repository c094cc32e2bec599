/**
 * What an AppController emits. Apart from events.ts because a payload is the session itself:
 * the session's own event map must not depend on the session class.
 */
import type { DurableSession } from "./session.js";

export interface AppControllerEvents {
  /** The app's session object, created once (before its first connect). */
  session: [DurableSession];
  "session-lost": [{ reason: string; holder: string | null }];
  reconnecting: [{ attempt: number; delayMs: number }];
  "reconnect-failed": [{ attempt: number; error: unknown; permanent: boolean }];
  reconnected: ["resumed" | "new"];
}

export const APP_CONTROLLER_EVENTS = [
  "session",
  "session-lost",
  "reconnecting",
  "reconnect-failed",
  "reconnected",
] as const satisfies readonly (keyof AppControllerEvents)[];

type AppUnlisted = Exclude<keyof AppControllerEvents, (typeof APP_CONTROLLER_EVENTS)[number]>;
const everyAppEventListed: [AppUnlisted] extends [never] ? true : AppUnlisted = true;
void everyAppEventListed;
