import { createHash, randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/** A reply the component sent: the attributes of its <iq/> and the raw stanza text. */
export interface ComponentReply {
  id: string;
  type: string;
  raw: string;
}

const IQ = /<iq\b[^>]*?(?:\/>|>[\s\S]*?<\/iq>)/g;
const ATTR = (name: string) => new RegExp(`\\b${name}=(['"])(.*?)\\1`);
const ID = ATTR("id");
const TYPE = ATTR("type");

/**
 * The XMPP-server side of XEP-0114 for tests and benchmarks: accepts one component connection,
 * checks the handshake, lets the caller write raw stanzas and reports the component's IQ replies
 * ("reply" events and `waitFor`). Loopback only.
 */
export class FakeComponentServer extends EventEmitter {
  private server: Server | undefined;
  private socket: Socket | undefined;
  private buffer = "";
  private handshaken = false;
  private readonly waiters = new Map<string, (r: ComponentReply) => void>();
  readonly replies = new Map<string, ComponentReply>();
  /** Keep every reply in `replies` (off for benchmarks). */
  keepReplies = true;
  port = 0;

  constructor(
    private readonly domain: string,
    private readonly secret: string,
  ) {
    super();
  }

  async listen(port = 0): Promise<number> {
    this.server = createServer((s) => this.accept(s));
    await new Promise<void>((r) => this.server!.listen(port, "127.0.0.1", () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  get service(): string {
    return `xmpp://127.0.0.1:${this.port}`;
  }

  get connected(): boolean {
    return this.handshaken && !!this.socket && !this.socket.destroyed;
  }

  /** Resolves once a component completed the handshake. */
  waitConnected(timeoutMs = 20_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("component did not connect")), timeoutMs);
      this.once("online", () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private accept(s: Socket): void {
    if (this.socket && !this.socket.destroyed) this.socket.destroy();
    this.socket = s;
    this.buffer = "";
    this.handshaken = false;
    const streamId = randomBytes(8).toString("hex");
    s.setNoDelay(true);
    s.setEncoding("utf8");
    s.on("error", () => undefined);
    s.on("close", () => {
      if (this.socket === s) {
        this.handshaken = false;
        this.emit("offline");
      }
    });
    s.on("data", (chunk: string) => {
      if (!this.handshaken) {
        this.buffer += chunk;
        if (this.buffer.includes("<stream:stream") && !this.buffer.includes("__opened__")) {
          s.write(
            `<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' from='${this.domain}' id='${streamId}'>`,
          );
          this.buffer = this.buffer.slice(this.buffer.indexOf("<stream:stream")) + "__opened__";
        }
        const m = /<handshake>([0-9a-f]+)<\/handshake>/.exec(this.buffer);
        if (m) {
          const expected = createHash("sha1")
            .update(streamId + this.secret)
            .digest("hex");
          if (m[1] !== expected) {
            s.end(
              "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
            );
            return;
          }
          s.write("<handshake/>");
          this.handshaken = true;
          this.buffer = "";
          this.emit("online");
        }
        return;
      }
      this.buffer += chunk;
      // Stanzas the caller sends while we report replies go out together (as a server batches).
      s.cork();
      process.nextTick(() => s.uncork());
      if (this.buffer.includes("</stream:stream>")) {
        s.end("</stream:stream>");
        return;
      }
      let last = 0;
      IQ.lastIndex = 0;
      for (let m = IQ.exec(this.buffer); m; m = IQ.exec(this.buffer)) {
        last = IQ.lastIndex;
        const raw = m[0];
        const head = raw.slice(0, raw.indexOf(">"));
        const r: ComponentReply = {
          id: ID.exec(head)?.[2] ?? "",
          type: TYPE.exec(head)?.[2] ?? "",
          raw,
        };
        if (this.keepReplies) this.replies.set(r.id, r);
        const w = this.waiters.get(r.id);
        if (w) {
          this.waiters.delete(r.id);
          w(r);
        }
        this.emit("reply", r);
      }
      if (last > 0) this.buffer = this.buffer.slice(last);
    });
  }

  /** Writes raw XML to the component; false when no component is connected. */
  send(xml: string): boolean {
    if (!this.connected) return false;
    return this.socket!.write(xml);
  }

  /** Resolves with the component's reply to IQ `id`. */
  waitFor(id: string, timeoutMs = 30_000): Promise<ComponentReply> {
    const have = this.replies.get(id);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(id);
        reject(new Error(`no reply to iq ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(id, (r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }

  /** Drops the component connection (simulates a server restart). */
  dropConnection(): void {
    this.socket?.destroy();
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/** A push IQ as ejabberd sends it (no summary), optionally with a pushModule publish-option. */
export function pushIq(opts: {
  id: string;
  token: string;
  from?: string;
  to?: string;
  app?: string;
  body?: string;
}): string {
  const options = opts.app
    ? `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pushModule'><value>${opts.app}</value></field></x></publish-options>`
    : "";
  const summary =
    opts.body !== undefined
      ? `<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field><field var='last-message-body'><value>${opts.body}</value></field></x>`
      : "";
  return (
    `<iq type='set' from='${opts.from ?? "localhost"}' to='${opts.to ?? "push.localhost"}' id='${opts.id}'>` +
    `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${opts.token}'><item>` +
    `<notification xmlns='urn:xmpp:push:0'>${summary}</notification></item></publish>${options}</pubsub></iq>`
  );
}
