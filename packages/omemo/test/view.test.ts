// SignalView's cache of committed session records (no server: a real store and real libsignal
// records). The row is the truth: the cached object is used only while the row holds the text it
// was committed as, and never twice without a commit in between.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureAccount } from "@lichen/engine";
import { openStore, type Store } from "@lichen/store";
import { afterEach, describe, expect, it } from "vitest";
import { signal, type SessionRecord } from "../src/libsignal.js";
import { addressName, SignalView, type OwnIdentity } from "../src/view.js";

const BOB = "bob@localhost";
const BOB_DEVICE = 7;

function ownIdentity(deviceId: number): OwnIdentity {
  return {
    deviceId,
    registrationId: signal.keyhelper.generateRegistrationId(),
    identity: signal.curve.generateKeyPair(),
  };
}

/** A session with bob's device built from a bundle made here, committed through `view`. */
const bobIdentity = signal.curve.generateKeyPair();

async function commitNewSession(store: Store, view: SignalView): Promise<void> {
  const signedPreKey = signal.curve.generateKeyPair();
  const storage = view.storageFor(BOB, BOB_DEVICE);
  await new signal.SessionBuilder(
    storage,
    new signal.ProtocolAddress(addressName(BOB), BOB_DEVICE),
  ).initOutgoing({
    identityKey: bobIdentity.pubKey,
    registrationId: 1,
    signedPreKey: {
      keyId: 1,
      publicKey: signedPreKey.pubKey,
      signature: signal.curve.calculateSignature(bobIdentity.privKey, signedPreKey.pubKey),
    },
    preKey: { keyId: 1, publicKey: signal.curve.generateKeyPair().pubKey },
  });
  store.write((tx) => {
    expect(view.stillValid(tx)).toBe(true);
    view.apply(tx);
  });
}

const load = (view: SignalView): SessionRecord | undefined =>
  view.storageFor(BOB, BOB_DEVICE).loadSession("");

describe("SignalView's committed-record cache", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  function store(): Store {
    const dir = mkdtempSync(join(tmpdir(), "lichen-omemo-view-"));
    dirs.push(dir);
    const s = openStore({ path: join(dir, "l.db"), role: "main" });
    ensureAccount(s, { id: "alice", jid: "alice@localhost", resource: "phone" });
    return s;
  }

  it("reuses the committed object once, then reads the row again; a row another process rewrote is read, never the cached object", async () => {
    const s = store();
    const own = ownIdentity(1);
    const writer = new SignalView(s, "alice", own);
    await commitNewSession(s, writer);
    const written = load(writer); // the object the commit wrote (the view's own)
    const committed = load(new SignalView(s, "alice", own));
    expect(committed).toBe(written); // not parsed and deserialized again
    expect(committed?.haveOpenSession()).toBe(true);
    // Taken out on use: a second view (as after an attempt that failed half-way, its object
    // possibly ratcheted) gets a fresh object deserialized from the row.
    const fresh = load(new SignalView(s, "alice", own));
    expect(fresh).not.toBe(committed);
    expect(JSON.stringify(fresh!.serialize())).toBe(JSON.stringify(committed!.serialize()));

    // Commit again (the cache holds this object now), then another process replaces the row.
    const second = new SignalView(s, "alice", own);
    await commitNewSession(s, second);
    const cachedText = (
      s.sqlite.prepare("SELECT record FROM omemo_sessions").get() as { record: string }
    ).record;
    const other = openStore({ path: s.path, role: "nse" });
    const otherView = new SignalView(other, "alice", own);
    await commitNewSession(other, otherView);
    other.close();
    const rowText = (
      s.sqlite.prepare("SELECT record FROM omemo_sessions").get() as { record: string }
    ).record;
    expect(rowText).not.toBe(cachedText);
    const afterOther = load(new SignalView(s, "alice", own));
    expect(JSON.stringify(afterOther!.serialize())).toBe(rowText);
    s.close();
  });
});
