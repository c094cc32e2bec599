/**
 * Milliseconds since the Unix epoch, as an integer. Used for every point in time in the contract so
 * that SQLite, TypeScript and Swift agree without parsing date strings.
 * @TJS-type integer
 * @minimum 0
 */
export type EpochMs = number;

/**
 * An EpochMs or null ("never"). Its own alias because typescript-json-schema drops the integer and
 * minimum of `EpochMs` inside `EpochMs | null` (it would become `["null","number"]`).
 * @TJS-type ["integer", "null"]
 * @minimum 0
 */
export type EpochMsOrNull = EpochMs | null;

/**
 * A non-negative integer counter (stream-management h, sequence numbers, versions).
 * @TJS-type integer
 * @minimum 0
 */
export type Counter = number;

/** The processes that share one Lichen database. */
export type ProcessRole = "main" | "nse" | "share";

/** Where an IPC message goes: one process role, or every process ("*"). */
export type IpcDestination = ProcessRole | "*";

/** Any JSON value bound into a handler or carried as opaque data. */
export type JsonObject = { [key: string]: unknown };
