/** Root types of the contract: one JSON Schema file each. */
export const ROOT_TYPES = [
  "HandlerDescriptor",
  "AccountState",
  "IpcMessage",
  "ProcessLockRecord",
  "ShareOutboxItem",
  "NotificationContent",
  "PushRegistration",
] as const;
export type RootType = (typeof ROOT_TYPES)[number];

/** Discriminated unions: emitted to Swift as one struct per variant plus an enum. */
export const UNIONS: Record<string, string> = {
  IpcMessage: "type",
  ShareContent: "kind",
  NotificationContent: "kind",
};

/** "AccountState" -> "account-state" */
export function kebab(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase();
}
