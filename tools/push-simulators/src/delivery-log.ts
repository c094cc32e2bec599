import { EventEmitter } from "node:events";

/** Append-only record of accepted pushes with event-based waiting (no polling in tests). */
export class DeliveryLog<D extends { token: string }> {
  readonly all: D[] = [];
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

  add(d: D): void {
    this.all.push(d);
    this.events.emit("delivery", d);
  }

  forToken(token: string): D[] {
    return this.all.filter((d) => d.token === token);
  }

  /**
   * Resolves with the deliveries (all, or of `token`) once there are at least `n`;
   * rejects after `timeoutMs` saying how many arrived.
   */
  wait(n: number, timeoutMs: number, token?: string): Promise<D[]> {
    const current = (): D[] => (token === undefined ? this.all : this.forToken(token));
    const now = current();
    if (now.length >= n) return Promise.resolve(now.slice());
    return new Promise((resolve, reject) => {
      const onDelivery = (d: D): void => {
        if (token !== undefined && d.token !== token) return;
        const list = current();
        if (list.length < n) return;
        cleanup();
        resolve(list.slice());
      };
      const timer = setTimeout(() => {
        cleanup();
        const what = token === undefined ? "" : " for the given token";
        reject(
          new Error(`waited ${timeoutMs} ms for ${n} deliveries${what}, got ${current().length}`),
        );
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.events.off("delivery", onDelivery);
      };
      this.events.on("delivery", onDelivery);
    });
  }
}
