import type { HandlerDescriptor } from "@lichen/schema";
import type { StoreTx } from "@lichen/store";

/** What a handler gets: the transaction it runs in and the merged arguments. */
export interface HandlerContext {
  tx: StoreTx;
  accountId: string;
  /** Queue an outbound stanza in this transaction (sent after commit). */
  send(stanza: import("@xmpp/xml").Element): void;
}

export type HandlerFn = (ctx: HandlerContext, args: Record<string, unknown>) => void;

export class UnknownHandlerError extends Error {
  constructor(readonly handlerName: string) {
    super(
      `no handler named "${handlerName}" is registered in this process; ` +
        `every process must register the same handlers (defineHandler) before it connects`,
    );
    this.name = "UnknownHandlerError";
  }
}

/**
 * The registry of serializable callbacks. A callback is stored as data (HandlerDescriptor: name +
 * bound JSON values) so that whichever process receives the answer can run it.
 */
export class HandlerRegistry {
  private readonly fns = new Map<string, HandlerFn>();

  define(name: string, fn: HandlerFn): void {
    if (this.fns.has(name)) throw new Error(`handler "${name}" is already defined`);
    this.fns.set(name, fn);
  }

  has(name: string): boolean {
    return this.fns.has(name);
  }

  /** A descriptor for `name` with bound values; throws if no such handler is registered. */
  descriptor(
    name: string,
    bound: Record<string, unknown> = {},
    invalidation?: string,
  ): HandlerDescriptor {
    if (!this.fns.has(name)) throw new UnknownHandlerError(name);
    if (invalidation !== undefined && !this.fns.has(invalidation))
      throw new UnknownHandlerError(invalidation);
    // Round-trip through JSON now, so a value that would not survive storage fails at creation.
    const json = JSON.parse(JSON.stringify(bound)) as Record<string, unknown>;
    return { v: 1, name, ...(invalidation ? { invalidation } : {}), bound: json };
  }

  /** Calls the handler; call-time args override bound values of the same name. */
  call(
    ctx: HandlerContext,
    descriptor: HandlerDescriptor,
    args: Record<string, unknown> = {},
  ): void {
    const fn = this.fns.get(descriptor.name);
    if (!fn) throw new UnknownHandlerError(descriptor.name);
    fn(ctx, { ...descriptor.bound, ...args });
  }

  /** Calls the invalidation handler (if any) with the reason; the operation can never complete. */
  invalidate(ctx: HandlerContext, descriptor: HandlerDescriptor, reason: string): void {
    if (!descriptor.invalidation) return;
    const fn = this.fns.get(descriptor.invalidation);
    if (!fn) throw new UnknownHandlerError(descriptor.invalidation);
    fn(ctx, { ...descriptor.bound, reason });
  }
}

/** The process-wide default registry (every process registers the same handlers at start-up). */
export const handlers = new HandlerRegistry();
export const defineHandler = (name: string, fn: HandlerFn): void => handlers.define(name, fn);
