import type { JsonObject } from "./common.js";

/**
 * A serializable callback: the name of a handler registered in every process, an optional
 * invalidation handler, and JSON values bound at creation time. Calling it merges call-time
 * arguments over `bound` (call-time wins on equal names).
 */
export interface HandlerDescriptor {
  /**
   * Format version of this descriptor.
   * @TJS-type integer
   * @minimum 1
   * @maximum 1
   */
  v: 1;
  /**
   * Name of the handler in the registry.
   * @minLength 1
   * @maxLength 200
   */
  name: string;
  /**
   * Handler called instead when the pending operation can never complete (session not resumed,
   * account removed).
   * @minLength 1
   * @maxLength 200
   */
  invalidation?: string;
  /** JSON values bound when the descriptor was created. */
  bound: JsonObject;
}
