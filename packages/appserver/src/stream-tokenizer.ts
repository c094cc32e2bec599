/**
 * The component stream's XML tokenizer: ltx 3.1's SaxLtx (the tokenizer of xmpp.js' parser; MIT,
 * (c) Stephan Maka and contributors) state for state and event for event, rewritten for the push
 * path's cost only:
 * - handlers called directly (no EventEmitter), with fixed arguments;
 * - runs of characters that change nothing in a state (a tag or attribute name, blanks inside a
 *   tag, text or an attribute value without its end) skipped in one scan, not one loop turn each;
 * - an end tag gets no attributes object (ltx makes one per tag and drops it unread), a start tag
 *   its own (ltx's is copied by the element: here the element may keep it, see `onStart`);
 * - the usual names (iq, pubsub, xmlns, node...) are string constants, not new slices.
 * What it reports, and when it throws (entities), is ltx's for any input split anywhere
 * (test/component-parser.test.ts compares both on hostile input at every split offset).
 */

const STATE_TEXT = 0;
const STATE_IGNORE_COMMENT = 1;
const STATE_IGNORE_INSTRUCTION = 2;
const STATE_TAG_NAME = 3;
const STATE_TAG = 4;
const STATE_ATTR_NAME = 5;
const STATE_ATTR_EQ = 6;
const STATE_ATTR_QUOT = 7;
const STATE_ATTR_VALUE = 8;
const STATE_CDATA = 9;

export interface TokenHandlers {
  /**
   * A start tag. `attrs` is the tokenizer's own object, never touched again once this returns
   * (if this throws, the tokenizer goes on with a copy, as ltx goes on with the object its
   * elements copy).
   */
  onStart(name: string, attrs: Record<string, string>): void;
  onEnd(name: string): void;
  onText(text: string): void;
}

/**
 * data.slice(start, end), or the same name as a constant when it is one seen in every push IQ (no
 * new string; an attribute's name then is a key V8 already knows). By length and first character,
 * then compared in full.
 */
function name(data: string, start: number, end: number): string {
  const c = data.charCodeAt(start);
  if (c < 128) {
    switch (((end - start) << 7) | c) {
      case (2 << 7) | 105: {
        const d = data.charCodeAt(start + 1);
        if (d === 113) return "iq";
        if (d === 100) return "id";
        break;
      }
      case (2 << 7) | 116:
        if (data.charCodeAt(start + 1) === 111) return "to";
        break;
      case (4 << 7) | 116:
        if (data.startsWith("type", start)) return "type";
        break;
      case (4 << 7) | 102:
        if (data.startsWith("from", start)) return "from";
        break;
      case (4 << 7) | 105:
        if (data.startsWith("item", start)) return "item";
        break;
      case (4 << 7) | 110:
        if (data.startsWith("node", start)) return "node";
        break;
      case (5 << 7) | 120:
        if (data.startsWith("xmlns", start)) return "xmlns";
        break;
      case (6 << 7) | 112:
        if (data.startsWith("pubsub", start)) return "pubsub";
        break;
      case (7 << 7) | 112:
        if (data.startsWith("publish", start)) return "publish";
        break;
      case (12 << 7) | 110:
        if (data.startsWith("notification", start)) return "notification";
        break;
    }
  }
  return data.slice(start, end);
}

export class StreamTokenizer {
  private state = STATE_TEXT;
  private remainder: string | null | undefined;
  private parseRemainder: boolean | undefined;
  private tagName: string | undefined;
  /** The tag's attributes: made at its first attribute, or when a start tag is reported. */
  private attrs: Record<string, string> | undefined;
  private endTag: boolean | undefined;
  private selfClosing: boolean | undefined;
  private attrQuote: number | undefined;
  private attrQuoteChar: string | undefined;
  private recordStart: number | undefined = 0;
  private attrName: string | undefined;
  private ended = false;

  constructor(private readonly h: TokenHandlers) {}

  /** ltx's `_handleTagOpening`. */
  private tagOpening(endTag: boolean | undefined, tagName: string): void {
    if (!endTag) {
      const attrs = (this.attrs ??= {});
      try {
        this.h.onStart(tagName, attrs);
        if (this.selfClosing) this.h.onEnd(tagName);
      } catch (e) {
        // ltx stays on this tag (its elements hold copies): so does this, on a copy
        this.attrs = { ...attrs };
        throw e;
      }
    } else {
      this.h.onEnd(tagName);
    }
  }

  write(input: string | { toString(): string }): void {
    if (this.ended) return;
    let data = typeof input === "string" ? input : input.toString();
    let pos = 0;
    /* Anything from previous write()? */
    if (this.remainder) {
      data = this.remainder + data;
      pos += !this.parseRemainder ? this.remainder.length : 0;
      this.parseRemainder = false;
      this.remainder = null;
    }
    const len = data.length;
    const endRecording = (): string | undefined => {
      const start = this.recordStart;
      if (typeof start === "number") {
        this.recordStart = undefined;
        return data.slice(start, pos);
      }
      return undefined;
    };

    for (; pos < len; pos++) {
      const state = this.state;
      switch (state) {
        case STATE_TEXT: {
          // to the next '<'; none: nothing in the rest of the text changes anything
          const lt = data.indexOf("<", pos);
          if (lt === -1) pos = len - 1;
          else if (pos !== lt) pos = lt;
          break;
        }
        case STATE_ATTR_VALUE: {
          const quot = data.indexOf(this.attrQuoteChar!, pos);
          if (quot === -1) pos = len - 1;
          else pos = quot;
          break;
        }
        case STATE_IGNORE_COMMENT: {
          const endcomment = data.indexOf("-->", pos);
          if (endcomment !== -1) pos = endcomment + 2; // target the '>' character
          break;
        }
        // No default
      }

      const c = data.charCodeAt(pos);
      switch (state) {
        case STATE_TEXT:
          if (c === 60 /* < */) {
            const text = endRecording();
            if (text) this.h.onText(unescapeXML(text));
            this.state = STATE_TAG_NAME;
            this.recordStart = pos + 1;
            this.attrs = undefined;
          }
          break;
        case STATE_CDATA:
          if (c === 93 /* ] */) {
            if (data.substr(pos + 1, 2) === "]>") {
              const cData = endRecording();
              if (cData) this.h.onText(cData);
              this.state = STATE_TEXT;
            } else if (len < pos + 2) {
              this.parseRemainder = true;
              pos = len;
            }
          }
          break;
        case STATE_TAG_NAME:
          if (c === 47 /* / */ && this.recordStart === pos) {
            this.recordStart = pos + 1;
            this.endTag = true;
          } else if (c === 33 /* ! */) {
            if (data.substr(pos + 1, 7) === "[CDATA[") {
              this.recordStart = pos + 8;
              this.state = STATE_CDATA;
            } else if (len < pos + 8 && "[CDATA[".startsWith(data.slice(pos + 1))) {
              // Potentially CDATA, but the chunk ends: let the next write() decide
              this.parseRemainder = true;
              pos = len;
            } else {
              this.recordStart = undefined;
              this.state = STATE_IGNORE_COMMENT;
            }
          } else if (c === 63 /* ? */) {
            this.recordStart = undefined;
            this.state = STATE_IGNORE_INSTRUCTION;
          } else if (c <= 32 || c === 47 /* / */ || c === 62 /* > */) {
            const start = this.recordStart;
            if (typeof start === "number") {
              this.recordStart = undefined;
              this.tagName = name(data, start, pos);
            } else this.tagName = undefined;
            pos--;
            this.state = STATE_TAG;
          } else {
            // a name character: on to the next character that does something here
            let j = pos + 1;
            for (; j < len; j++) {
              const d = data.charCodeAt(j);
              if (d <= 32 || d === 47 || d === 33 || d === 63 || d === 62) break;
            }
            pos = j - 1;
          }
          break;
        case STATE_IGNORE_COMMENT:
          if (c === 62 /* > */) {
            const prevFirst = data.charCodeAt(pos - 1);
            const prevSecond = data.charCodeAt(pos - 2);
            if (
              (prevFirst === 45 /* - */ && prevSecond === 45) /* - */ ||
              (prevFirst === 93 /* ] */ && prevSecond === 93) /* ] */
            ) {
              this.state = STATE_TEXT;
            }
          }
          break;
        case STATE_IGNORE_INSTRUCTION:
          if (c === 62 /* > */) {
            const prev = data.charCodeAt(pos - 1);
            if (prev === 63 /* ? */) this.state = STATE_TEXT;
          }
          break;
        case STATE_TAG:
          if (c === 62 /* > */) {
            this.tagOpening(this.endTag, this.tagName!);
            this.tagName = undefined;
            this.attrs = undefined;
            this.endTag = undefined;
            this.selfClosing = undefined;
            this.state = STATE_TEXT;
            this.recordStart = pos + 1;
          } else if (c === 47 /* / */) {
            this.selfClosing = true;
          } else if (c > 32) {
            this.recordStart = pos;
            this.state = STATE_ATTR_NAME;
          } else {
            // blanks: on to the next character above 32
            let j = pos + 1;
            while (j < len && data.charCodeAt(j) <= 32) j++;
            pos = j - 1;
          }
          break;
        case STATE_ATTR_NAME:
          if (c <= 32 || c === 61 /* = */) {
            const start = this.recordStart;
            if (typeof start === "number") {
              this.recordStart = undefined;
              this.attrName = name(data, start, pos);
            } else this.attrName = undefined;
            pos--;
            this.state = STATE_ATTR_EQ;
          } else {
            let j = pos + 1;
            for (; j < len; j++) {
              const d = data.charCodeAt(j);
              if (d <= 32 || d === 61) break;
            }
            pos = j - 1;
          }
          break;
        case STATE_ATTR_EQ:
          if (c === 61 /* = */) this.state = STATE_ATTR_QUOT;
          break;
        case STATE_ATTR_QUOT:
          if (c === 34 /* " */ || c === 39 /* ' */) {
            this.attrQuote = c;
            this.attrQuoteChar = c === 34 ? '"' : "'";
            this.state = STATE_ATTR_VALUE;
            this.recordStart = pos + 1;
          }
          break;
        case STATE_ATTR_VALUE:
          if (c === this.attrQuote) {
            const value = unescapeXML(endRecording()!);
            (this.attrs ??= {})[this.attrName!] = value;
            this.attrName = undefined;
            this.state = STATE_TAG;
          }
          break;
      }
    }

    const start = this.recordStart;
    if (typeof start === "number" && start <= len) {
      this.remainder = data.slice(start);
      this.recordStart = 0;
    }
  }

  end(data?: string): void {
    if (data) this.write(data);
    /* Uh, yeah */
    this.ended = true;
  }
}

const unescapeXMLTable: Record<string, string> = {
  "&amp;": "&",
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&apos;": "'",
};

/** ltx's unescapeXMLReplace (same results, same errors). */
function unescapeXMLReplace(match: string): string {
  if (match[1] === "#") {
    const num = match[2] === "x" ? parseInt(match.slice(3), 16) : parseInt(match.slice(2), 10);
    // https://www.w3.org/TR/xml/#NT-Char defines legal XML characters:
    // #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
    if (
      num === 0x9 ||
      num === 0xa ||
      num === 0xd ||
      (num >= 0x20 && num <= 0xd7ff) ||
      (num >= 0xe000 && num <= 0xfffd) ||
      (num >= 0x10000 && num <= 0x10ffff)
    ) {
      return String.fromCodePoint(num);
    }
    throw new Error("Illegal XML character 0x" + num.toString(16));
  }
  if (unescapeXMLTable[match]) {
    return unescapeXMLTable[match] || match;
  }
  throw new Error("Illegal XML entity " + match);
}

/** ltx's unescapeXML. */
export function unescapeXML(s: string): string {
  let result = "";
  let start = -1;
  let end = -1;
  let previous = 0;
  while ((start = s.indexOf("&", previous)) !== -1 && (end = s.indexOf(";", start + 1)) !== -1) {
    result = result + s.slice(previous, start) + unescapeXMLReplace(s.slice(start, end + 1));
    previous = end + 1;
  }
  // shortcut if loop never entered: the original string without creating new objects
  if (previous === 0) return s;
  // push the remaining characters
  return result + s.substring(previous);
}
