import { createRequire } from "node:module";
import { prng } from "@lichen/test-kit";
import { describe, expect, it } from "vitest";
import { directTokenEvents, type XmlParserClass } from "../src/component-link.js";
import { StreamTokenizer } from "../src/stream-tokenizer.js";
import { pushIq } from "../src/testing/component-server.js";
import { hostileIqs } from "./helpers/hostile.js";

// The parser class the component's connection actually uses (@xmpp/component's own @xmpp/xml).
const require = createRequire(import.meta.url);
const componentCore = require.resolve("@xmpp/component-core");
const { Parser } = require(require.resolve("@xmpp/xml", { paths: [componentCore] })) as {
  Parser: XmlParserClass;
};

/**
 * Everything a parser reports for `chunks` (stanzas as XML, errors by message). `boom`: the
 * element listener throws for elements named boom (a handler throwing inside the tokenizer).
 */
function events(P: XmlParserClass, chunks: string[], boom = false): string[] {
  const p = new P() as unknown as {
    on(e: string, f: (x: { toString(): string; message?: string }) => void): void;
    write(d: string): void;
  };
  const out: string[] = [];
  const seen: { toString(): string }[] = [];
  for (const e of ["start", "element", "end"])
    p.on(e, (el) => {
      seen.push(el);
      out.push(`${e} ${el.toString()} ${namespaces(el as unknown as Tree)}`);
      if (boom && (el as unknown as Tree).name === "boom") throw new Error("listener threw");
    });
  p.on("error", (err) => out.push(`error ${err.message}`));
  for (const c of chunks) {
    try {
      p.write(c);
    } catch (e) {
      out.push(`throw ${(e as Error).message}`);
    }
  }
  // the elements as they are now: nothing reported may change afterwards
  out.push(`final ${seen.map(String).join("")}`);
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
    // handlers that throw inside the tokenizer (it goes on from the same tag, as ltx does)
    for (const x of [
      "<boom a='1'/><iq id='z'/>",
      "<boom a='1' b='2'/><iq/>",
      "<iq><boom x='1'/><c/></iq>",
      "<boom/><boom c='3'/>",
    ]) {
      for (let i = 1; i < x.length; i++) {
        const split = [open, x.slice(0, i), x.slice(i), x];
        expect(events(Direct, split, true), `${x} split at ${i}`).toEqual(
          events(Parser, split, true),
        );
      }
    }
    // the parser really is the direct one: its tokenizer is ours
    const p = new Direct() as unknown as { parser: unknown };
    expect(p.parser).toBeInstanceOf(StreamTokenizer);
  });
});

describe("the component's stream tokenizer against ltx's on random markup", () => {
  const Direct = directTokenEvents(Parser);
  const open = "<stream:stream xmlns='jabber:component:accept' id='x'>";
  // XML-significant pieces, names the tokenizer knows, and text that is none of them
  const pieces = [
    "<",
    ">",
    "/",
    "=",
    "'",
    '"',
    "!",
    "?",
    "-",
    "--",
    "]]",
    "]",
    "[CDATA[",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?",
    "?>",
    " ",
    "\n",
    "\t",
    "&",
    ";",
    "&amp;",
    "&lt;",
    "&#65;",
    "&#x0;",
    "&bogus;",
    "&#x1F600;",
    "iq",
    "pubsub",
    "publish",
    "item",
    "x",
    "xmlns",
    "node",
    "id",
    "to",
    "type",
    "from",
    "a",
    "bc",
    "é",
    "\u00f8",
    "\u2603",
    "<iq",
    "</iq>",
    "<a ",
    "</a>",
    "<x/>",
    " id='1'",
    ' b="2"',
    "xmlns='urn:a'",
    "<iq id='",
    "'/>",
    "x:y",
    "xmlns:x='urn:b'",
  ];

  it(`reports what xmpp.js' parser reports, whole and split anywhere (seed ${SEED})`, () => {
    const r = prng(SEED + 1);
    for (let n = 0; n < 1500; n++) {
      const k = 1 + Math.floor(r() * 14);
      let x = "";
      for (let i = 0; i < k; i++) x += pieces[Math.floor(r() * pieces.length)]!;
      const whole = [open, x, "<iq id='after'/>"];
      const ctx = `seed ${SEED} #${n}: ${JSON.stringify(x)}`;
      expect(events(Direct, whole), ctx).toEqual(events(Parser, whole));
      for (let i = 1; i < x.length; i++) {
        const split = [open, x.slice(0, i), x.slice(i), "<iq id='after'/>"];
        expect(events(Direct, split), `${ctx} split at ${i}`).toEqual(events(Parser, split));
      }
      // three pieces, and one character at a time
      const a = Math.floor(r() * x.length);
      const b = a + Math.floor(r() * (x.length - a));
      const three = [open, x.slice(0, a), x.slice(a, b), x.slice(b), "<iq/>"];
      expect(events(Direct, three), `${ctx} split at ${a}, ${b}`).toEqual(events(Parser, three));
      const chars = [open, ...x, "<iq/>"];
      expect(events(Direct, chars), `${ctx} by characters`).toEqual(events(Parser, chars));
    }
  });
});
