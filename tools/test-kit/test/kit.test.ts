import { X509Certificate } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  lichenPushConfig,
  PERSISTENT_ROOM,
  prng,
  roomConfigForm,
  selfSignedCert,
  until,
} from "../src/index.js";

describe("test-kit", () => {
  it("lichenPushConfig writes each APNs app, and the optional keys only when given", () => {
    const app = {
      topic: "t",
      teamId: "T",
      keyId: "K",
      privateKeyFile: "/k.p8",
      endpoint: "http://s",
    };
    const yaml = lichenPushConfig({
      component: { port: 5347, domain: "push.localhost", secret: "s3" },
      apps: { ios: app, silent: { ...app, pushType: "background" } },
      dataDir: "/d",
      http: { port: 0 },
    });
    expect(yaml).toContain("  service: xmpp://127.0.0.1:5347\n  domain: push.localhost\n");
    expect(yaml.match(/^ {4}type: apns$/gm)).toHaveLength(2);
    expect(yaml.match(/pushType: background/g)).toHaveLength(1);
    expect(yaml).not.toMatch(/reconnectInitialDelay|rateLimit|host:/);
    expect(yaml.endsWith("http:\n  port: 0\n")).toBe(true);
    const full = lichenPushConfig({
      component: { port: 1, domain: "d", secret: "s", reconnectInitialDelay: "200ms" },
      apps: { ios: app },
      dataDir: "/d",
      http: { host: "127.0.0.1", port: 9 },
      rateLimitWindow: "250ms",
    });
    expect(full).toContain("  reconnectInitialDelay: 200ms\n");
    expect(full).toContain("rateLimit:\n  window: 250ms\n");
    expect(full).toContain("http:\n  host: 127.0.0.1\n  port: 9\n");
  });

  it("roomConfigForm submits FORM_TYPE first, then each field once, with the caller's factory", () => {
    interface El {
      name: string;
      attrs: Record<string, string>;
      children: (El | string)[];
    }
    const xml = (
      name: string,
      attrs?: Record<string, string> | null,
      ...children: (El | string)[]
    ) => ({ name, attrs: attrs ?? {}, children }) as El;
    const form = roomConfigForm(xml, { ...PERSISTENT_ROOM, "muc#roomconfig_membersonly": "1" });
    expect(form.attrs.xmlns).toBe("http://jabber.org/protocol/muc#owner");
    const x = form.children[0] as El;
    expect(x.attrs).toEqual({ xmlns: "jabber:x:data", type: "submit" });
    const fields = (x.children as El[]).map((f) => [f.attrs.var, (f.children[0] as El).children]);
    expect(fields).toEqual([
      ["FORM_TYPE", ["http://jabber.org/protocol/muc#roomconfig"]],
      ["muc#roomconfig_persistentroom", ["1"]],
      ["muc#roomconfig_membersonly", ["1"]],
    ]);
  });

  it("prng replays the same sequence for the same seed and differs for another", () => {
    const a = prng(42);
    const b = prng(42);
    const xs = [a(), a.next(), a.int(1000), a.between(5, 7)];
    expect([b(), b.next(), b.int(1000), b.between(5, 7)]).toEqual(xs);
    expect(prng(43)()).not.toBe(xs[0]);
    // mulberry32(42)'s first output: keeps recorded seeds meaningful across refactors.
    expect(prng(42)()).toBeCloseTo(0.6011037519201636, 12);
  });

  it("until returns the first truthy value and names what timed out", async () => {
    let n = 0;
    await expect(until(() => ++n >= 3 && n, "n", 5_000, 1)).resolves.toBe(3);
    await expect(until(async () => false, "never", 30, 5)).rejects.toThrow(
      "timed out waiting for never",
    );
  });

  it("selfSignedCert issues a certificate for the given names", () => {
    const c = selfSignedCert({ commonName: "kit", altNames: ["DNS:localhost", "IP:127.0.0.1"] });
    const x = new X509Certificate(c.certPem);
    expect(x.subject).toContain("CN=kit");
    expect(x.checkHost("localhost")).toBe("localhost");
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
  });
});
