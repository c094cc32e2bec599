import { component, type ComponentEntity } from "@xmpp/component";
import type { Logger } from "pino";
import type { StanzaErrorSpec } from "./request.js";
import { StreamTokenizer } from "./stream-tokenizer.js";
import { escapeXml, type XmlElement } from "./xml.js";

const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

export interface ComponentLinkOptions {
  service: string;
  domain: string;
  secret: string;
  initialDelayMs: number;
  maxDelayMs: number;
  logger: Logger;
  onStanza: (stanza: XmlElement) => void;
  onStatus?: (online: boolean) => void;
}

/** What xmpp.js' stream parser (@xmpp/xml Parser) exposes to the subclass below. */
interface XmlParser {
  /** The tokenizer (ltx's SaxLtx; replaced below): `write` is all the parser calls. */
  parser: { write(data: string): void };
  /** The stream element (the first one built) and the element being built. */
  root: ParsedElement | null;
  cursor: ParsedElement | null;
  emit(event: string, ...args: unknown[]): boolean;
  onStartElement(name: string, attrs: Record<string, string>): void;
  onEndElement(name: string): void;
  onText(text: string): void;
}
export type XmlParserClass = new () => XmlParser;
/** What the parser does with the ltx elements it builds. */
interface ParsedElement {
  name: string;
  parent: ParsedElement | null;
  children: unknown[];
  attrs: Record<string, string>;
}

/**
 * xmpp.js' stream parser with our tokenizer (StreamTokenizer: ltx's, state for state and event for
 * event, with direct handler calls and fewer loop turns and allocations) and elements built without
 * copying the attributes object the tokenizer made for them (ltx's Element copies it into a new
 * one) and appended without a rest array. The same elements, the same handlers in the same order:
 * what it accepts, builds and rejects (XMLError, thrown entity errors) is unchanged.
 */
export function directTokenEvents(Base: XmlParserClass): XmlParserClass {
  // the element class the parser builds (ltx's Element of xmpp.js' own ltx), from a probe
  const probe = new Base();
  probe.onStartElement("probe", {});
  const proto = Object.getPrototypeOf(probe.root) as object;
  return class DirectTokenEvents extends Base {
    constructor() {
      super();
      this.parser = new StreamTokenizer(this);
    }

    // the tokenizer's handler names
    onStart(name: string, attrs: Record<string, string>): void {
      this.onStartElement(name, attrs);
    }
    onEnd(name: string): void {
      this.onEndElement(name);
    }

    /**
     * xmpp.js' onStartElement, with the element made as ltx's `new Element(name, attrs)` makes it
     * (same prototype, same fields in the same order) but keeping `attrs` (the tokenizer's, used
     * for nothing else) instead of copying it into a new object.
     */
    override onStartElement(name: string, attrs: Record<string, string>): void {
      const element = Object.create(proto) as ParsedElement;
      element.name = name;
      element.parent = null;
      element.children = [];
      element.attrs = attrs;
      const { root, cursor } = this;
      if (!root) {
        this.root = element;
        this.emit("start", element);
      } else if (cursor !== root) {
        // ltx's `append` of one node: pushed, parent set. A first child gets an array of one
        // (a push onto the empty array would give it room for 17).
        const parent = cursor!;
        if (parent.children.length === 0) parent.children = [element];
        else parent.children.push(element);
        element.parent = parent;
      }
      this.cursor = element;
    }
  };
}

/**
 * The XEP-0114 link to the XMPP server (@xmpp/component for the stream and handshake), with our own
 * reconnect: exponential back-off with jitter, reset once online, so a restarted server is rejoined
 * and a wrong secret or a down server is not hammered. Replies are written as strings (no DOM).
 */
export class ComponentLink {
  private entity: ComponentEntity | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopping = false;
  private outbox: string[] = [];
  private flushScheduled = false;
  private onlineNow = false;
  reconnects = 0;

  constructor(private readonly o: ComponentLinkOptions) {}

  get online(): boolean {
    return this.onlineNow;
  }

  start(): void {
    const e = component({
      service: this.o.service,
      domain: this.o.domain,
      password: this.o.secret,
    });
    // The factory installs xmpp.js' iq middleware, which would answer our IQs itself (and report
    // internal errors as cancel errors). We handle stanzas directly, so remove it.
    for (const l of e.listeners("element"))
      e.removeListener("element", l as (...a: unknown[]) => void);
    e.reconnect.stop();
    const withParser = e as unknown as { Parser: XmlParserClass };
    withParser.Parser = directTokenEvents(withParser.Parser);
    // xmpp.js detaches its parser on a parse error but keeps feeding socket data to it, which throws
    // from the socket's data handler (an uncaught exception). Drop data once the parser is gone.
    const ent = e as unknown as { _onData(d: Buffer): void; parser: unknown };
    const onData = ent._onData;
    ent._onData = function (this: typeof ent, d: Buffer) {
      if (this.parser) onData.call(this, d);
    };
    e.on("stanza", (el: XmlElement) => {
      try {
        this.o.onStanza(el);
      } catch (err) {
        this.o.logger.error({ err }, "stanza handler threw");
      }
    });
    e.on("error", (err: Error) => {
      this.o.logger.warn({ err: err.message }, "component link error");
      // Not-well-formed XML ends the stream: drop the socket so that we reconnect cleanly.
      if (err.name === "XMLError") e.socket?.destroy();
    });
    // The server closed the stream (</stream:stream>) without closing the socket: xmpp.js would sit
    // on a dead stream. Drop the socket; the disconnect handler reconnects.
    e.on("close", () => {
      if (!this.stopping) e.socket?.destroy();
    });
    // Replies are small and written once per event-loop turn: with Nagle's algorithm a write made
    // while an earlier one is unacknowledged waits for the server's delayed ACK (40 ms on Linux),
    // so the last replies of a burst reached the server ~40 ms late (the benchmark's appserver sat
    // idle ~30 % of the time). node:http2 turns Nagle off on its sockets for the same reason.
    e.on("connect", () => {
      (e.socket as unknown as { setNoDelay?(on?: boolean): void } | null)?.setNoDelay?.(true);
    });
    e.on("online", () => {
      this.failures = 0;
      this.onlineNow = true;
      this.o.logger.info({ service: this.o.service, domain: this.o.domain }, "component online");
      this.o.onStatus?.(true);
    });
    e.on("disconnect", () => {
      if (this.onlineNow && !this.stopping) this.o.logger.warn("component link lost");
      this.onlineNow = false;
      this.o.onStatus?.(false);
      this.schedule();
    });
    this.entity = e;
    e.start().catch((err: Error) => {
      this.o.logger.warn({ err: err.message }, "component start failed; will retry");
      // `disconnect` normally follows a failed connect; make sure a retry is scheduled regardless.
      if (e.status === "offline") this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopping) return;
    if (this.timer) clearTimeout(this.timer);
    const base = Math.min(
      this.o.maxDelayMs,
      this.o.initialDelayMs * 2 ** Math.min(this.failures, 20),
    );
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.failures++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const e = this.entity;
      if (!e || this.stopping) return;
      if (e.status !== "disconnect" && e.status !== "offline") return;
      this.reconnects++;
      e.reconnect.reconnect().catch((err: Error) => {
        this.o.logger.debug({ err: err.message }, "reconnect attempt failed");
        if (e.status === "offline") this.schedule();
      });
    }, delay);
  }

  /**
   * Queues a raw stanza string; everything queued in one event-loop turn goes out in one socket
   * write (fewer syscalls under load). False if the link is down (the server times the IQ out).
   */
  write(xml: string): boolean {
    const e = this.entity;
    // Not gated on "online": stanzas can arrive in the same chunk as the handshake answer, before
    // xmpp.js reports the link online.
    if (!e || !e.socket) return false;
    this.outbox.push(xml);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return true;
  }

  private flush(): void {
    this.flushScheduled = false;
    const e = this.entity;
    const data = this.outbox.join("");
    this.outbox = [];
    if (!e || !e.socket || data.length === 0) return;
    e.write(data).catch(() => undefined);
  }

  /**
   * A reply's addresses escaped: the server's domain and ours repeat on nearly every reply, so the
   * last pair is kept with its escaped `to='…' from='…'` and a result reply's tail (two string
   * compares per reply instead of two regex replaces and four concatenations).
   */
  private readonly lastAddresses = {
    from: "",
    to: "",
    text: "to='' from=''",
    resultTail: "' to='' from=''/>",
  };

  private addresses(req: { from: string; to: string }): { text: string; resultTail: string } {
    const ours = req.to || this.o.domain;
    const a = this.lastAddresses;
    if (a.from !== req.from || a.to !== ours) {
      a.from = req.from;
      a.to = ours;
      a.text = `to='${escapeXml(req.from)}' from='${escapeXml(ours)}'`;
      a.resultTail = `' ${a.text}/>`;
    }
    return a;
  }

  replyResult(req: { id: string; from: string; to: string }): boolean {
    return this.write(
      `<iq type='result' id='${escapeXml(req.id)}${this.addresses(req).resultTail}`,
    );
  }

  replyError(req: { id: string; from: string; to: string }, error: StanzaErrorSpec): boolean {
    return this.write(
      `<iq type='error' id='${escapeXml(req.id)}' ${this.addresses(req).text}>` +
        `<error type='${error.type}'><${error.condition} xmlns='${NS_STANZAS}'/>` +
        `<text xmlns='${NS_STANZAS}'>${escapeXml(error.text)}</text></error></iq>`,
    );
  }

  async stop(): Promise<void> {
    this.flush();
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const e = this.entity;
    if (!e) return;
    try {
      await Promise.race([e.stop(), new Promise((r) => setTimeout(r, 3000))]);
    } catch {
      // closing a dead link fails; nothing left to do
    }
    if (e.socket) e.socket.destroy();
    this.onlineNow = false;
  }
}
