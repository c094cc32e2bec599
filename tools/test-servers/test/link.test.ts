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
      // 5000 bytes up and back at 10 kB/s: at least ~0.5 s each way (only a lower bound holds
      // on a loaded machine).
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(slow.bytes).toEqual({ up: 5000, down: 5000 });
      slow.resetBytes();
      expect(slow.bytes).toEqual({ up: 0, down: 0 });
      s.destroy();
    } finally {
      await slow.close();
    }
  });
});
