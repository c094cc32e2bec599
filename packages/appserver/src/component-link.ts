import { component, type ComponentEntity } from "@xmpp/component";
import type { Logger } from "pino";
import type { StanzaErrorSpec } from "./request.js";
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
  /** ltx's tokenizer; it reports tokens through its own `emit`. */
  parser: { emit(type: string, ...args: unknown[]): boolean };
  /** The stream element (the first one built) and the element being built. */
  root: ParsedElement | null;
  cursor: ParsedElement | null;
  onStartElement(name: string, attrs: Record<string, string>): void;
  onEndElement(name: string): void;
  onText(text: string): void;
}
export type XmlParserClass = new () => XmlParser;
/** What the parser does with the ltx elements it builds. */
interface ParsedElement {
  cnode(child: ParsedElement): ParsedElement;
}

/**
 * xmpp.js' stream parser with the tokenizer's events (start tag, end tag, text: ~10 per push IQ)
 * handed straight to the parser's handlers instead of through EventEmitter (a rest-argument array
 * and a bound-function call each), and children appended without a rest array. The same
 * tokenizer, the same elements, the same handlers in the same order:
 * what it accepts, builds and rejects (XMLError) is unchanged; anything else it emits still goes
 * through EventEmitter.
 */
export function directTokenEvents(Base: XmlParserClass): XmlParserClass {
  return class DirectTokenEvents extends Base {
    constructor() {
      super();
      const tokenizer = this.parser;
      const emit = tokenizer.emit;
      const onStart = this.onStartElement.bind(this);
      const onEnd = this.onEndElement.bind(this);
      const onText = this.onText.bind(this);
      // fixed parameters, not a rest array (ltx's events carry at most two arguments)
      tokenizer.emit = (type: string, a?: unknown, b?: unknown): boolean => {
        if (type === "startElement") onStart(a as string, b as Record<string, string>);
        else if (type === "endElement") onEnd(a as string);
        else if (type === "text") onText(a as string);
        else return emit.call(tokenizer, type, a, b);
        return true;
      };
    }

    override onStartElement(name: string, attrs: Record<string, string>): void {
      const { root, cursor } = this;
      // The stream element, or a stanza (built, not appended to the stream): the parser's own way.
      if (!root || !cursor || cursor === root) return super.onStartElement(name, attrs);
      // A child: built as the parser builds it (the stream element's class) and added with
      // `cnode`, which is `append` for one node without its rest array.
      const Element = root.constructor as new (
        n: string,
        a: Record<string, string>,
      ) => ParsedElement;
      this.cursor = cursor.cnode(new Element(name, attrs));
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
   * last escaped value of each is kept (two string compares instead of two regex replaces).
   */
  private readonly lastTo = { raw: "", escaped: "" };
  private readonly lastFrom = { raw: "", escaped: "" };

  private addresses(req: { from: string; to: string }): string {
    const to = this.lastTo;
    if (to.raw !== req.from) {
      to.raw = req.from;
      to.escaped = escapeXml(req.from);
    }
    const from = this.lastFrom;
    const ours = req.to || this.o.domain;
    if (from.raw !== ours) {
      from.raw = ours;
      from.escaped = escapeXml(ours);
    }
    return `to='${to.escaped}' from='${from.escaped}'`;
  }

  replyResult(req: { id: string; from: string; to: string }): boolean {
    return this.write(`<iq type='result' id='${escapeXml(req.id)}' ${this.addresses(req)}/>`);
  }

  replyError(req: { id: string; from: string; to: string }, error: StanzaErrorSpec): boolean {
    return this.write(
      `<iq type='error' id='${escapeXml(req.id)}' ${this.addresses(req)}>` +
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
