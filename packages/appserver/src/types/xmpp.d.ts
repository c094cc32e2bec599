// Minimal typings for the untyped xmpp.js packages, limited to what the appserver uses.

declare module "@xmpp/xml" {
  import type { XmlElement } from "../xml.js";
  export default function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: unknown[]
  ): XmlElement;
  export class Parser {
    write(data: string): void;
    end(data?: string): void;
    on(event: "start" | "element" | "end", fn: (el: XmlElement) => void): this;
    on(event: "error", fn: (err: Error) => void): this;
  }
}

declare module "@xmpp/xml/lib/parse.js" {
  import type { XmlElement } from "../xml.js";
  export default function parse(data: string): XmlElement;
}

declare module "@xmpp/component" {
  import type { EventEmitter } from "node:events";
  import type { XmlElement } from "../xml.js";
  export interface ComponentEntity extends EventEmitter {
    status: string;
    jid: { toString(): string } | null;
    options: { service: string; domain: string };
    socket: { destroy(): void; cork?(): void; uncork?(): void } | null;
    reconnect: { stop(): void; reconnect(): Promise<void>; delay: number };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: XmlElement): Promise<void>;
    write(s: string): Promise<void>;
    disconnect(timeout?: number): Promise<void>;
  }
  export function component(opts: {
    service: string;
    domain: string;
    password: string;
  }): ComponentEntity;
}

declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events";
  import type { XmlElement } from "../xml.js";
  export interface Client extends EventEmitter {
    status: string;
    socket: { socket?: { destroy(): void }; destroy(): void } | null;
    reconnect: { stop(): void };
    streamManagement: { enabled: boolean; inbound: number; id: string };
    iqCaller: { request(el: XmlElement, timeout?: number): Promise<XmlElement> };
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: XmlElement): Promise<void>;
  }
  export function client(opts: {
    service: string;
    domain: string;
    username: string;
    password: string;
    resource?: string;
  }): Client;
  export function xml(
    name: string,
    attrs?: Record<string, string | undefined> | null,
    ...children: unknown[]
  ): XmlElement;
}
