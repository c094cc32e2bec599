import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  OutboundQueue,
  TransactionUsageError,
  openStore,
  tables,
  type Store,
} from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: () => void;
let store: Store;

beforeEach(() => {
  const t = tempDir();
  cleanup = t.cleanup;
  store = openStore({ path: path.join(t.dir, "q.db"), role: "main", clock: () => 1000 });
  store.write((tx) => {
    for (const id of ["acc", "other"])
      tx.insert(tables.accounts)
        .values({ id, jid: `${id}@example.org`, createdAt: tx.now })
        .run();
  });
});
afterEach(() => {
  store.close();
  cleanup();
});

const after = (q: OutboundQueue, seq: number) => store.read((tx) => q.after(tx, seq));

const row = (seq: number, stanza: string, important = false) => ({
  streamKey: "s1",
  seq,
  stanza,
  important,
});

describe("OutboundQueue", () => {
  it("appends, lists after a seq in order, acks through h, per account only", () => {
    const q = new OutboundQueue("acc");
    const other = new OutboundQueue("other");
    store.write((tx) => {
      expect(q.lastSeq(tx)).toBe(0);
      q.append(tx, row(2, "<b/>"));
      q.append(tx, row(1, "<a/>", true));
      q.append(tx, row(3, "<c/>", true));
      other.append(tx, row(7, "<x/>"));
    });
    expect(after(q, 0)).toEqual([
      { seq: 1, stanza: "<a/>" },
      { seq: 2, stanza: "<b/>" },
      { seq: 3, stanza: "<c/>" },
    ]);
    expect(after(q, 2)).toEqual([{ seq: 3, stanza: "<c/>" }]);
    store.read((tx) => {
      expect(q.lastSeq(tx)).toBe(3);
      expect(q.importantThrough(tx, 2)).toEqual(["<a/>"]);
      expect(q.rows(tx).map((r) => [r.seq, r.streamKey, r.important, r.createdAt])).toEqual([
        [1, "s1", true, 1000],
        [2, "s1", false, 1000],
        [3, "s1", true, 1000],
      ]);
    });
    store.write((tx) => q.removeThrough(tx, 2));
    expect(after(q, 0)).toEqual([{ seq: 3, stanza: "<c/>" }]);
    store.write((tx) => q.replace(tx, 3, "<ping/>", false));
    store.read((tx) => expect(q.importantThrough(tx, 3)).toEqual([]));
    expect(after(q, 0)).toEqual([{ seq: 3, stanza: "<ping/>" }]);
    store.write((tx) => q.clear(tx));
    expect(after(q, 0)).toEqual([]);
    expect(after(other, 0)).toEqual([{ seq: 7, stanza: "<x/>" }]);
  });

  it("refuses changes in a read transaction", () => {
    const q = new OutboundQueue("acc");
    expect(() => store.read((tx) => q.append(tx, row(1, "<a/>")))).toThrow(TransactionUsageError);
    expect(() => store.read((tx) => q.clear(tx))).toThrow(TransactionUsageError);
  });
});
