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
  restore(): void;
  close(): Promise<void>;
}

export async function startFlakyLink(target: {
  port: number;
  host?: string;
  /** Throttle each direction to this rate, e.g. 4000 for a 32 kbit/s link (default: no limit). */
  bytesPerSecond?: number;
}): Promise<FlakyLink> {
  const host = target.host ?? "127.0.0.1";
  const rate = target.bytesPerSecond;
  const bytes = { up: 0, down: 0 };
  // Each direction forwards in arrival order; throttled, a chunk leaves when the ones before it
  // have "taken" their share of the line.
  const relay = (from: net.Socket, to: net.Socket, dir: "up" | "down") => {
    let nextFree = 0;
    const after = (fn: () => void) => {
      const wait = nextFree - Date.now();
      if (wait > 0) setTimeout(fn, wait);
      else fn();
    };
    from.on("data", (chunk: Buffer) => {
      bytes[dir] += chunk.length;
      if (rate) nextFree = Math.max(Date.now(), nextFree) + (chunk.length / rate) * 1000;
      after(() => {
        if (!to.destroyed) to.write(chunk);
      });
    });
    from.on("end", () => after(() => to.end()));
  };
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
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
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    relay(client, upstream, "up");
    relay(upstream, client, "down");
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
