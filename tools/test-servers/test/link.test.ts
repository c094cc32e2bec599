// The flaky link against a real TCP echo server: data flows, cut() resets both sides and refuses
// new connections, restore() lets them through again.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFlakyLink, type FlakyLink } from "../src/index.js";

let echo: net.Server;
let echoPort = 0;
const serverSide: net.Socket[] = [];
beforeAll(async () => {
  echo = net.createServer((s) => {
    serverSide.push(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  echoPort = (echo.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => echo.close(() => r())));

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => resolve(s));
    s.once("error", reject);
  });
}

function roundTrip(s: net.Socket, text: string): Promise<string> {
  return new Promise((resolve) => s.once("data", (d) => resolve(d.toString())).write(text));
}

describe("startFlakyLink", () => {
  let link: FlakyLink;
  beforeAll(async () => {
    link = await startFlakyLink({ port: echoPort });
  });
  afterAll(() => link.close());

  it("passes data, cuts both sides with a reset, refuses while down, passes again after restore", async () => {
    const a = await connect(link.port);
    expect(await roundTrip(a, "hello")).toBe("hello");
    expect(link.accepted).toBe(1);

    const clientClosed = new Promise<unknown>((r) => a.once("close", r));
    const clientError = new Promise<NodeJS.ErrnoException>((r) => a.once("error", r));
    const upstream = serverSide.at(-1)!;
    const upstreamClosed = new Promise<unknown>((r) => upstream.once("close", r));
    link.cut();
    expect(link.up).toBe(false);
    expect((await clientError).code).toBe("ECONNRESET");
    await clientClosed;
    await upstreamClosed; // the server sees its side go too

    // While down: the TCP handshake completes, the client's first bytes get a reset.
    const b = await connect(link.port);
    const bErr = await new Promise<NodeJS.ErrnoException>((r) => b.once("error", r).write("hi"));
    expect(bErr.code).toBe("ECONNRESET");
    expect(link.refused).toBe(1);

    link.restore();
    const c = await connect(link.port);
    expect(await roundTrip(c, "again")).toBe("again");
    expect(link.accepted).toBe(2);
    c.destroy();
  });

  it("counts bytes each way and throttles to the given rate", async () => {
    const slow = await startFlakyLink({ port: echoPort, bytesPerSecond: 10_000 });
    try {
      const s = await connect(slow.port);
      const payload = "x".repeat(5000);
      const t0 = Date.now();
      const echoed = await new Promise<number>((resolve) => {
        let got = 0;
        s.on("data", (d) => {
          got += d.length;
          if (got >= payload.length) resolve(got);
        });
        s.write(payload);
      });
      const elapsed = Date.now() - t0;
      expect(echoed).toBe(5000);
      // 5000 bytes up at 10 kB/s take 0.5 s; the way back pipelines behind it segment by segment
      // (1460 bytes), so the last 620-byte segment adds 62 ms: at least ~560 ms (only a lower
      // bound holds on a loaded machine).
      expect(elapsed).toBeGreaterThanOrEqual(550);
      expect(slow.bytes).toEqual({ up: 5000, down: 5000 });
      slow.resetBytes();
      expect(slow.bytes).toEqual({ up: 0, down: 0 });
      s.destroy();
    } finally {
      await slow.close();
    }
  });
  /** Sends `size` bytes through `l` to the echo server and back; ms until the last byte is back. */
  async function echoTime(l: FlakyLink, size: number): Promise<{ ms: number; got: number }> {
    const s = await connect(l.port);
    try {
      const t0 = performance.now();
      const got = await new Promise<number>((resolve, reject) => {
        let n = 0;
        const timer = setTimeout(
          () => reject(new Error(`only ${n} of ${size} bytes back`)),
          30_000,
        );
        s.on("data", (d) => {
          n += d.length;
          if (n >= size) {
            clearTimeout(timer);
            resolve(n);
          }
        });
        s.write(Buffer.alloc(size, "y"));
      });
      return { ms: performance.now() - t0, got };
    } finally {
      s.destroy();
    }
  }

  it("delays every byte by delayMs each way: a small write crosses in >= 2 x delay", async () => {
    const delayed = await startFlakyLink({ port: echoPort, delayMs: 150 });
    try {
      const { ms, got } = await echoTime(delayed, 10);
      expect(got).toBe(10);
      expect(ms).toBeGreaterThanOrEqual(300 - 2); // timer granularity
      expect(ms).toBeLessThan(300 + 3000); // loose: a loaded machine
      expect(delayed.bytes).toEqual({ up: 10, down: 10 });
    } finally {
      await delayed.close();
    }
  });

  it("rate and delay together: a large write takes size/rate + delay each way, in order", async () => {
    const slow = await startFlakyLink({ port: echoPort, bytesPerSecond: 20_000, delayMs: 100 });
    try {
      const s = await connect(slow.port);
      const payload = Buffer.from(Array.from({ length: 8000 }, (_, i) => 65 + (i % 26)));
      const t0 = performance.now();
      const back = await new Promise<Buffer>((resolve, reject) => {
        const parts: Buffer[] = [];
        let n = 0;
        const timer = setTimeout(() => reject(new Error(`only ${n} bytes back`)), 30_000);
        s.on("data", (d: Buffer) => {
          parts.push(d);
          n += d.length;
          if (n >= payload.length) {
            clearTimeout(timer);
            resolve(Buffer.concat(parts));
          }
        });
        // Several writes, as a client would make: order must survive the line.
        for (let i = 0; i < payload.length; i += 1000) s.write(payload.subarray(i, i + 1000));
      });
      const ms = performance.now() - t0;
      expect(back.equals(payload)).toBe(true);
      // Up: 8000/20000 s = 400 ms on the line + 100 ms; the way back pipelines behind it segment
      // by segment, so the floor is 400 + 100 + 100 + the last 700-byte segment's 35 ms back
      // (900 ms would be the two ways not overlapping at all).
      expect(ms).toBeGreaterThanOrEqual(600 - 2);
      expect(ms).toBeLessThan(900 + 3000);
      expect(slow.bytes).toEqual({ up: 8000, down: 8000 });
      s.destroy();

      // A 200-byte write on the same (idle) line: 10 ms on the line + 100 ms delay each way.
      const small = await echoTime(slow, 200);
      expect(small.ms).toBeGreaterThanOrEqual(220 - 2);
    } finally {
      await slow.close();
    }
  });

  it("a delayed link still cuts at once and lets data through after restore", async () => {
    const delayed = await startFlakyLink({ port: echoPort, delayMs: 200, bytesPerSecond: 4000 });
    try {
      const a = await connect(delayed.port);
      const err = new Promise<NodeJS.ErrnoException>((r) => a.once("error", r));
      a.write("in flight when cut");
      delayed.cut(); // the write is still on the line: it is dropped with the connection
      expect((await err).code).toBe("ECONNRESET");
      delayed.restore();
      const { got } = await echoTime(delayed, 50);
      expect(got).toBe(50);
      expect(delayed.accepted).toBe(2);
    } finally {
      await delayed.close();
    }
  });
});
