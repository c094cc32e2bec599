import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { directTokenEvents, type XmlParserClass } from "../src/component-link.js";
import { pushIq } from "../src/testing/component-server.js";
import { hostileIqs } from "./helpers/hostile.js";

// The parser class the component's connection actually uses (@xmpp/component's own @xmpp/xml).
const require = createRequire(import.meta.url);
const componentCore = require.resolve("@xmpp/component-core");
const { Parser } = require(require.resolve("@xmpp/xml", { paths: [componentCore] })) as {
  Parser: XmlParserClass;
};

/** Everything a parser reports for `chunks` (stanzas as XML, errors by message). */
function events(P: XmlParserClass, chunks: string[]): string[] {
  const p = new P() as unknown as {
    on(e: string, f: (x: { toString(): string; message?: string }) => void): void;
    write(d: string): void;
  };
  const out: string[] = [];
  for (const e of ["start", "element", "end"])
    p.on(e, (el) => out.push(`${e} ${el.toString()} ${namespaces(el as unknown as Tree)}`));
  p.on("error", (err) => out.push(`error ${err.message}`));
  for (const c of chunks) {
    try {
      p.write(c);
    } catch (e) {
      out.push(`throw ${(e as Error).message}`);
    }
  }
  return out;
}

interface Tree {
  name: string;
  children: (Tree | string)[];
  parent: Tree | null;
  getNS(): string | undefined;
}
/** Each element's resolved namespace and parent link (what parseStanza's lookups rely on). */
function namespaces(el: Tree): string {
  const kids = el.children.filter((c): c is Tree => typeof c === "object");
  for (const k of kids) if (k.parent !== el) return `${k.name}: wrong parent`;
  return `${el.name}=${el.getNS()}[${kids.map(namespaces).join(",")}]`;
}

const SEED = Number(process.env.LICHEN_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

describe("the component's stream parser with direct token events", () => {
  const Direct = directTokenEvents(Parser);
  const open =
    "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>";
  const inputs: string[] = [
    pushIq({ id: "1", token: "ab".repeat(32), body: "hi &amp; <b>" }),
    pushIq({ id: "2", token: "cd".repeat(32), app: "monal" }),
    "<iq type='set' id='3'><a></b></iq>", // mismatched end tag
    "text before <iq/>",
    "<iq id='4'><![CDATA[x<y]]><!-- c --><?pi x?></iq>",
    "<iq id='&bogus;'/>", // unknown entity: ltx throws
    "<iq id='&#x0;'/>", // illegal character reference
    "<iq id='5' a=\"q'q\" b='&lt;&#65;'>t&gt;</iq>",
    "</stream:stream>",
  ];

  it(`reports exactly what xmpp.js' parser reports, whole and split at every offset (seed ${SEED})`, () => {
    const hostile = hostileIqs(SEED, 40).map((h) => h.xml);
    for (const x of [...inputs, ...hostile]) {
      const whole = [open, x];
      expect(events(Direct, whole), x).toEqual(events(Parser, whole));
      if (x.length > 400) continue; // every split of the short ones (ltx's carry-over between writes)
      for (let i = 1; i < x.length; i++) {
        const split = [open, x.slice(0, i), x.slice(i)];
        expect(events(Direct, split), `${x} split at ${i}`).toEqual(events(Parser, split));
      }
    }
    // the parser really is the direct one: its tokenizer's emit is not EventEmitter's
    const p = new Direct() as unknown as { parser: { emit: unknown } };
    expect(p.parser.emit).not.toBe(
      (new Parser() as unknown as { parser: { emit: unknown } }).parser.emit,
    );
  });
});
