// Stored handlers waiting for something (table iq_handlers: an IQ's answer; idle_timers): the
// tick of connected time that expires them, their invalidation when their stream is gone, and
// calling one without letting an unknown name stop the session.
import type { HandlerDescriptor } from "@lichen/schema";
import { listIqHandlers, quarantineRow, takeIqHandler, tickConnectedTime } from "@lichen/store";
import type { ProtocolContext } from "./context.js";
import { UnknownHandlerError } from "./handlers.js";

type Log = (event: Record<string, unknown>) => void;

/** One tick of connected time: expired IQ handlers get a synthetic remote-server-timeout. */
export function fireExpiredHandlers(ctx: ProtocolContext, log: Log): void {
  const { expiredIq, firedTimers } = tickConnectedTime(ctx.tx, ctx.accountId, 1);
  // Each handler in its own savepoint: one that throws would otherwise roll back the whole
  // tick, every tick, and no timeout would ever fire again. It is quarantined instead.
  const run = (
    descriptor: HandlerDescriptor,
    args: Record<string, unknown>,
    table: string,
    rowKey: string,
  ) => {
    if (!ctx.session.registry.has(descriptor.name)) {
      // The store already removed the expired row: keep it in quarantine, not nowhere.
      const err = new UnknownHandlerError(descriptor.name);
      quarantineRow(ctx.tx, table, rowKey, JSON.stringify(descriptor), err.message);
      log({ event: "unknown-handler", handler: descriptor.name, expired: rowKey });
      ctx.afterCommit(() => ctx.session.emit("handler-error", err));
      return;
    }
    const state = structuredClone(ctx.state);
    try {
      ctx.tx.store.write(() => callHandlerSafely(ctx, descriptor, args, log));
    } catch (err) {
      for (const k of Object.keys(ctx.state)) if (!(k in state)) delete (ctx.state as never)[k];
      Object.assign(ctx.state, state);
      const error = err instanceof Error ? err.message : String(err);
      quarantineRow(
        ctx.tx,
        table,
        rowKey,
        JSON.stringify(descriptor),
        `timeout handler failed: ${error}`,
      );
      log({ event: "timeout-handler-failed", handler: descriptor.name, error });
      ctx.afterCommit(() =>
        ctx.session.emit("handler-error", err instanceof Error ? err : new Error(String(err))),
      );
    }
  };
  for (const h of expiredIq) {
    const args = { type: "error", condition: "remote-server-timeout", synthetic: true };
    run(h.handler, { ...args, iqId: h.iqId }, "iq_handlers", `${ctx.accountId}/${h.iqId}`);
  }
  // Idle timers (store addIdleTimer): the store removed them as fired; run their handlers.
  for (const t of firedTimers) run(t.handler, { timerId: t.id }, "idle_timers", t.id);
}

/** IQs of a stream that is gone can never be answered: run their invalidation handlers. */
export function invalidatePendingHandlers(ctx: ProtocolContext, log: Log): void {
  for (const pending of listIqHandlers(ctx.tx, ctx.accountId)) {
    const invalidation = pending.handler.invalidation;
    if (invalidation && !ctx.session.registry.has(invalidation)) {
      // Unknown here (another build?): report it and keep the row for a process that knows it.
      const err = new UnknownHandlerError(invalidation);
      log({ event: "unknown-handler", handler: invalidation });
      ctx.afterCommit(() => ctx.session.emit("handler-error", err));
      continue;
    }
    takeIqHandler(ctx.tx, ctx.accountId, pending.iqId);
    try {
      ctx.session.registry.invalidate(ctx, pending.handler, "session-not-resumed");
    } catch (err) {
      log({
        event: "invalidation-failed",
        handler: pending.handler.name,
        error: String(err),
      });
    }
  }
}

/** Runs a stored handler; an unknown name is reported, not thrown (the session continues). */
export function callHandlerSafely(
  ctx: ProtocolContext,
  descriptor: HandlerDescriptor,
  args: Record<string, unknown>,
  log: Log,
): void {
  try {
    ctx.session.registry.call(ctx, descriptor, args);
  } catch (err) {
    if (err instanceof UnknownHandlerError) {
      log({ event: "unknown-handler", handler: err.handlerName });
      ctx.afterCommit(() => ctx.session.emit("handler-error", err));
      return;
    }
    throw err;
  }
}
