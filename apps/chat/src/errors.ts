/** A problem the user can fix (bad config, unreachable server, ...): printed as one line, exit 1. */
export class CliError extends Error {
  override readonly name: string = "CliError";
}

/** Options that do not fit together (like commander's own usage errors): exit 2. */
export class UsageError extends CliError {
  override readonly name = "UsageError";
}

/** One line, whatever the error is (xmpp.js errors carry a `condition`, socket errors a `code`). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { condition?: string; code?: string; text?: string };
  const detail = e.condition ? `${e.condition}${e.text ? ` (${e.text})` : ""}` : e.message;
  return (detail || e.name || "unknown error").split("\n")[0]!;
}
