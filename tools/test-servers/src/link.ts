// A TCP link between a client and a server that a test can cut and restore, as a phone loses and
// regains its network: cut() resets every open connection and new ones; restore() lets
// connections through again. The server side stays up (its sessions survive, resumable).
import net from "node:net";

export interface FlakyLink {
  /** Loopback port the client connects to. */
  readonly port: number;
  /** Whether connections currently get through. */
  readonly up: boolean;
  /** Connections accepted so far (refused ones not counted). */
  readonly accepted: number;
  /** Connections reset while the link was down (at the client's first bytes). */
  readonly refused: number;
  /** Bytes relayed so far: client to server (`up`) and server to client (`down`). */
  readonly bytes: { up: number; down: number };
  /** Start counting bytes from zero again. */
  resetBytes(): void;
  /** Reset every open connection (both directions) and reset new ones until restore(). */
  cut(): void;
  /**
   * Open connections go silent for good: nothing is relayed either way, and nothing is closed
   * (no RST, no FIN) — a half-open link after a network change or a NAT timeout. Connections
   * opened afterwards work.
   */
  stall(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Largest piece a throttled or delayed link moves at once (a TCP segment on Ethernet). */
const SEGMENT = 1460;

export async function startFlakyLink(target: {
  port: number;
  host?: string;
  /** Throttle each direction to this rate, e.g. 4000 for a 32 kbit/s link (default: no limit). */
  bytesPerSecond?: number;
  /**
   * One-way latency added to every byte in each direction, e.g. 100 for a 200 ms round trip
   * (default 0). The TCP handshake with the relay itself is not delayed.
   */
  delayMs?: number;
  /** Sees every chunk as it enters the link (for transcripts in benchmarks and debugging). */
  tap?: (dir: "up" | "down", chunk: Buffer) => void;
}): Promise<FlakyLink> {
  const host = target.host ?? "127.0.0.1";
  const rate = target.bytesPerSecond;
  const delay = Math.max(0, target.delayMs ?? 0);
  const bytes = { up: 0, down: 0 };
  // Each direction is a FIFO line: a piece (at most SEGMENT bytes) starts to be sent when the
  // pieces before it are through (the rate serializes the line: it takes length/rate to send),
  // and arrives `delay` after it has been sent. So a piece never leaves before its arrival +
  // delay, order is kept, and a large write trickles out in segments as on a real link.
  const relay = (
    from: net.Socket,
    to: net.Socket,
    dir: "up" | "down",
    stalled: () => boolean = () => false,
  ) => {
    const queue: { at: number; piece: Buffer }[] = [];
    let lineFree = 0;
    let ended = false;
    let timer: NodeJS.Timeout | null = null;
    let drained: (() => void)[] = [];
    const pump = () => {
      timer = null;
      const now = Date.now();
      while (queue.length > 0 && queue[0]!.at <= now) {
        const { piece } = queue.shift()!;
        if (!to.destroyed && !stalled()) to.write(piece);
      }
      if (queue.length > 0) {
        timer = setTimeout(pump, Math.max(1, Math.ceil(queue[0]!.at - now)));
        return;
      }
      if (ended && !to.destroyed) to.end();
      const waiting = drained;
      drained = [];
      for (const fn of waiting) fn();
    };
    from.on("data", (chunk: Buffer) => {
      if (stalled()) return; // swallowed: the other side never hears of it
      bytes[dir] += chunk.length;
      target.tap?.(dir, chunk);
      const now = Date.now();
      for (let i = 0; i < chunk.length; i += SEGMENT) {
        const piece = chunk.subarray(i, i + SEGMENT);
        let sent = now;
        if (rate) {
          lineFree = Math.max(now, lineFree) + (piece.length / rate) * 1000;
          sent = lineFree;
        }
        queue.push({ at: sent + delay, piece });
      }
      if (!timer) pump();
    });
    from.on("end", () => {
      ended = true;
      if (!timer) pump();
    });
    to.on("close", () => {
      if (timer) clearTimeout(timer);
      timer = null;
      queue.length = 0;
    });
    /** Runs `fn` once everything already read from `from` has been handed to `to`. */
    return (fn: () => void) => {
      if (queue.length === 0) fn();
      else drained.push(fn);
    };
  };
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; stalled: boolean }>();
  let up = true;
  let accepted = 0;
  let refused = 0;
  const server = net.createServer((client) => {
    if (!up) {
      // The handshake completes, then the first bytes the client sends (its stream header) get a
      // reset: the client sees its connect succeed and the read fail, the harder case for it.
      refused++;
      client.on("error", () => {});
      client.once("data", () => client.resetAndDestroy());
      return;
    }
    accepted++;
    const upstream = net.connect({ port: target.port, host });
    const pair = { client, upstream, stalled: false };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    const isStalled = () => pair.stalled;
    const upFlushed = relay(client, upstream, "up", isStalled);
    const downFlushed = relay(upstream, client, "down", isStalled);
    // An error (a reset) takes both sides down at once; a clean close of one side first lets
    // what it sent cross the line (it may still be in flight on a delayed link).
    // A stalled pair tells neither side of the other's close: the server keeps its half until
    // its own timeouts, as behind a dead NAT mapping (close() still ends it).
    const endUnlessStalled = () => {
      if (pair.stalled) client.destroy();
      else end();
    };
    const upstreamGone = () => {
      if (pair.stalled) upstream.destroy();
      else end();
    };
    client
      .on("error", endUnlessStalled)
      .on("close", (hadError) => (hadError ? endUnlessStalled() : upFlushed(endUnlessStalled)));
    upstream
      .on("error", upstreamGone)
      .on("close", (hadError) => (hadError ? upstreamGone() : downFlushed(upstreamGone)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get up() {
      return up;
    },
    get accepted() {
      return accepted;
    },
    get refused() {
      return refused;
    },
    get bytes() {
      return { ...bytes };
    },
    resetBytes() {
      bytes.up = 0;
      bytes.down = 0;
    },
    cut() {
      up = false;
      // An RST, as when the radio drops: neither side gets a clean close.
      for (const { client, upstream } of [...pairs]) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    restore() {
      up = true;
    },
    stall() {
      for (const pair of pairs) pair.stalled = true;
    },
    close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
