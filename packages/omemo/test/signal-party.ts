// A libsignal party with plain in-memory storage (no store, no server), for the tests of the
// Signal layer: one identity, signed prekey and prekey (id 1), every identity trusted.
import { signal, type KeyPair, type SessionRecord, type SignalStorage } from "../src/libsignal.js";
import { pruneRecord } from "../src/view.js";

export function signalParty(opts: { prune?: boolean } = {}) {
  const identity = signal.curve.generateKeyPair();
  const spk = signal.curve.generateKeyPair();
  const preKey = signal.curve.generateKeyPair();
  const sessions = new Map<string, SessionRecord>();
  const storage: SignalStorage = {
    // A fresh object per load, as from a stored row.
    loadSession: (id) => {
      const r = sessions.get(id);
      return r && signal.SessionRecord.deserialize(JSON.parse(JSON.stringify(r.serialize())));
    },
    storeSession: (id, r) => {
      if (opts.prune) pruneRecord(r); // as the store view does
      sessions.set(id, r);
    },
    isTrustedIdentity: () => true,
    loadPreKey: (id) => (id === 1 ? preKey : undefined),
    removePreKey: () => {},
    loadSignedPreKey: () => spk,
    getOurRegistrationId: () => 1,
    getOurIdentity: (): KeyPair => identity,
  };
  /** This party's bundle as published (signed prekey 1, prekey 1), for another's initOutgoing. */
  const bundle = () => ({
    identityKey: identity.pubKey,
    registrationId: 0,
    signedPreKey: {
      keyId: 1,
      publicKey: spk.pubKey,
      signature: signal.curve.calculateSignature(identity.privKey, spk.pubKey),
    },
    preKey: { keyId: 1, publicKey: preKey.pubKey },
  });
  return { identity, spk, preKey, sessions, storage, bundle };
}
