/** Lichen's own test vectors (the config's vectors.generator). */
type RootType = string;

/**
 * Test vectors for every root type and every union variant. `swift` says what a Swift Codable
 * decoder can see: "decodes" for valid ones, "rejects" where the problem is structural (missing
 * field, wrong JSON type, fraction for an integer), "schema-only" where only JSON Schema catches it
 * (extra property, negative counter, unknown discriminator, which Swift decodes as `.unknown`).
 */
export interface Vector {
  type: RootType;
  name: string;
  valid: boolean;
  swift: "decodes" | "rejects" | "schema-only";
  value: unknown;
}

const now = 1_764_000_000_000;
const envelope = (type: string, data: object, extra: object = {}) => ({
  v: 1,
  id: `msg-${type}`,
  type,
  source: "main",
  destination: "nse",
  createdAt: now,
  expiresAt: now + 2000,
  data,
  ...extra,
});

const sm = {
  streamId: "y9itU8WupDCP",
  location: null,
  boundJid: "alice@example.org/phone",
  maxResumeSeconds: 300,
  inboundH: 42,
  outboundSent: 17,
  outboundAcked: 15,
  unackedQueue: "6f1c1f0e-queue",
  enabledAt: now,
};
const accountState = {
  stateVersion: 1,
  sm,
  features: { server: ["urn:xmpp:mam:2"], account: ["urn:xmpp:push:0"], discoveredAt: now },
  rosterVersion: "ver7",
  mam: { lastStanzaId: "abc", lastTimestamp: now, gapOpen: false, completedAt: now },
  push: {
    appServerJid: "push.example.org",
    node: "a".repeat(64),
    pushModule: "ios-prod",
    enabled: true,
    registeredAt: now,
  },
  csi: "inactive",
  omemo: {
    deviceId: 12345,
    deviceListPublished: true,
    bundlePublished: true,
    preKeysNeedRefill: false,
  },
  updatedAt: now,
};
const file = {
  path: "shared/IMG_0001.jpg",
  mimeType: "image/jpeg",
  size: 204800,
  fileName: "IMG_0001.jpg",
};
const outbox = (content: object) => ({
  v: 1,
  id: "out-1",
  accountId: "alice",
  to: "bob@example.org",
  createdAt: now,
  content,
});

const v = (type: RootType, name: string, value: unknown): Vector => ({
  type,
  name,
  valid: true,
  swift: "decodes",
  value,
});
const bad = (type: RootType, name: string, swift: Vector["swift"], value: unknown): Vector => ({
  type,
  name,
  valid: false,
  swift,
  value,
});

export const VECTORS: Vector[] = [
  v("HandlerDescriptor", "minimal", { v: 1, name: "mam.page", bound: {} }),
  v("HandlerDescriptor", "with-invalidation", {
    v: 1,
    name: "mam.page",
    invalidation: "mam.invalidated",
    bound: {
      queryId: "q1",
      after: null,
      page: 3,
      ratio: 0.5,
      ok: true,
      nested: { a: [1, 2, "x"] },
    },
  }),
  bad("HandlerDescriptor", "missing-name", "rejects", { v: 1, bound: {} }),
  bad("HandlerDescriptor", "empty-name", "schema-only", { v: 1, name: "", bound: {} }),
  bad("HandlerDescriptor", "wrong-version", "schema-only", { v: 2, name: "x", bound: {} }),
  bad("HandlerDescriptor", "extra-property", "schema-only", {
    v: 1,
    name: "x",
    bound: {},
    callback: "function(){}",
  }),

  v("AccountState", "full", accountState),
  v("AccountState", "fresh", {
    ...accountState,
    sm: {
      ...sm,
      streamId: null,
      boundJid: null,
      maxResumeSeconds: null,
      inboundH: 0,
      outboundSent: 0,
      outboundAcked: 0,
      enabledAt: null,
    },
    push: null,
    rosterVersion: null,
    omemo: { ...accountState.omemo, deviceId: null },
  }),
  bad("AccountState", "float-counter", "rejects", {
    ...accountState,
    sm: { ...sm, inboundH: 4.5 },
  }),
  bad("AccountState", "negative-counter", "schema-only", {
    ...accountState,
    sm: { ...sm, inboundH: -1 },
  }),
  bad("AccountState", "missing-sm", "rejects", { ...accountState, sm: undefined }),
  bad("AccountState", "string-time", "rejects", {
    ...accountState,
    updatedAt: "2026-11-24T00:00:00Z",
  }),
  bad("AccountState", "bad-csi", "schema-only", { ...accountState, csi: "asleep" }),
  v("AccountState", "with-optional-marks", {
    ...accountState,
    features: { ...accountState.features, serverCapsVer: "q07IKJEyjvHSyhy//CH0CxmKi8w=" },
    mam: { ...accountState.mam, syncedAt: now - 1000 },
  }),
  v("AccountState", "null-optional-marks", {
    ...accountState,
    features: { ...accountState.features, serverCapsVer: null },
    mam: { ...accountState.mam, syncedAt: null },
  }),
  // Nullable times are integers >= 0 like every other time (they were ["null","number"]).
  bad("AccountState", "fractional-enabled-at", "rejects", {
    ...accountState,
    sm: { ...sm, enabledAt: 1.5 },
  }),
  bad("AccountState", "negative-fractional-discovered-at", "rejects", {
    ...accountState,
    features: { ...accountState.features, discoveredAt: -3.25 },
  }),
  bad("AccountState", "negative-completed-at", "schema-only", {
    ...accountState,
    mam: { ...accountState.mam, completedAt: -1 },
  }),
  bad("AccountState", "fractional-last-timestamp", "rejects", {
    ...accountState,
    mam: { ...accountState.mam, lastTimestamp: now + 0.5 },
  }),
  bad("AccountState", "fractional-synced-at", "rejects", {
    ...accountState,
    mam: { ...accountState.mam, syncedAt: 2.5 },
  }),
  bad("AccountState", "negative-max-resume-seconds", "schema-only", {
    ...accountState,
    sm: { ...sm, maxResumeSeconds: -300 },
  }),
  bad("AccountState", "negative-device-id", "schema-only", {
    ...accountState,
    omemo: { ...accountState.omemo, deviceId: -5 },
  }),
  // A required-but-nullable field must be present (null is fine, absent is not), in Swift too.
  bad("AccountState", "absent-stream-id", "rejects", {
    ...accountState,
    sm: { ...sm, streamId: undefined },
  }),

  v("IpcMessage", "disconnect-all", envelope("disconnect-all", { reason: "main-app-foreground" })),
  v(
    "IpcMessage",
    "yielded",
    envelope(
      "yielded",
      { lockGeneration: 7, handledStanzas: 3 },
      { source: "nse", destination: "main", responseTo: "msg-disconnect-all" },
    ),
  ),
  v(
    "IpcMessage",
    "push-arrived",
    envelope("push-arrived", { pushId: "p1", receivedAt: now, accountId: "alice" }),
  ),
  v(
    "IpcMessage",
    "outbox-changed",
    envelope("outbox-changed", { itemIds: ["out-1"] }, { source: "share", destination: "main" }),
  ),
  v(
    "IpcMessage",
    "sync-error",
    envelope("sync-error", {
      accountId: "alice",
      code: "deadline",
      message: "NSE deadline reached",
    }),
  ),
  v(
    "IpcMessage",
    "state-changed",
    envelope("state-changed", { areas: ["messages"] }, { destination: "*" }),
  ),
  v("IpcMessage", "ping", envelope("ping", { nonce: "n1" })),
  v("IpcMessage", "pong", envelope("pong", { nonce: "n1" }, { responseTo: "msg-ping" })),
  bad("IpcMessage", "unknown-type", "schema-only", envelope("reboot", {})),
  bad(
    "IpcMessage",
    "missing-data-field",
    "rejects",
    envelope("sync-error", { accountId: "alice", code: "x" }),
  ),
  bad(
    "IpcMessage",
    "bad-destination",
    "schema-only",
    envelope("ping", {}, { destination: "watch" }),
  ),
  bad(
    "IpcMessage",
    "float-generation",
    "rejects",
    envelope("yielded", { lockGeneration: 1.5, handledStanzas: 0 }),
  ),
  bad("IpcMessage", "missing-expiry", "rejects", { ...envelope("ping", {}), expiresAt: undefined }),
  bad("IpcMessage", "negative-created-at", "schema-only", {
    ...envelope("ping", {}),
    createdAt: -1,
  }),
  bad("IpcMessage", "fractional-expires-at", "rejects", {
    ...envelope("ping", {}),
    expiresAt: now + 0.25,
  }),
  bad("IpcMessage", "missing-source", "rejects", { ...envelope("ping", {}), source: undefined }),

  v("ProcessLockRecord", "held", {
    key: "xmpp-session",
    holder: "nse:4711-ab12",
    leaseExpiresAt: now + 2000,
    generation: 3,
  }),
  bad("ProcessLockRecord", "float-generation", "rejects", {
    key: "xmpp-session",
    holder: "nse:1",
    leaseExpiresAt: now,
    generation: 2.5,
  }),
  bad("ProcessLockRecord", "empty-holder", "schema-only", {
    key: "xmpp-session",
    holder: "",
    leaseExpiresAt: now,
    generation: 1,
  }),

  v("ShareOutboxItem", "text", outbox({ kind: "text", text: "hello" })),
  v("ShareOutboxItem", "url", outbox({ kind: "url", url: "https://example.org/a", title: "A" })),
  v(
    "ShareOutboxItem",
    "geo",
    outbox({ kind: "geo", latitude: 48.2, longitude: 16.37, accuracyMeters: 12.5 }),
  ),
  v("ShareOutboxItem", "image", outbox({ kind: "image", file, caption: "sunset" })),
  v(
    "ShareOutboxItem",
    "file",
    outbox({
      kind: "file",
      file: { ...file, mimeType: "application/pdf", fileName: "a.pdf", path: "shared/a.pdf" },
    }),
  ),
  v(
    "ShareOutboxItem",
    "audiovisual",
    outbox({ kind: "audiovisual", file: { ...file, mimeType: "video/mp4" }, durationMs: 12000 }),
  ),
  v(
    "ShareOutboxItem",
    "contact",
    outbox({ kind: "contact", displayName: "Bob", jid: "bob@example.org" }),
  ),
  bad("ShareOutboxItem", "image-without-file", "rejects", outbox({ kind: "image", caption: "x" })),
  bad(
    "ShareOutboxItem",
    "latitude-out-of-range",
    "schema-only",
    outbox({ kind: "geo", latitude: 123, longitude: 0 }),
  ),
  bad(
    "ShareOutboxItem",
    "bytes-instead-of-reference",
    "rejects",
    outbox({ kind: "file", file: "iVBORw0KGgo=" }),
  ),
  bad("ShareOutboxItem", "unknown-kind", "schema-only", outbox({ kind: "sticker", id: 5 })),
  bad(
    "ShareOutboxItem",
    "negative-size",
    "schema-only",
    outbox({ kind: "file", file: { ...file, size: -1 } }),
  ),
  bad(
    "ShareOutboxItem",
    "fractional-duration",
    "rejects",
    outbox({ kind: "audiovisual", file, durationMs: 1.5 }),
  ),

  v("NotificationContent", "alert", {
    kind: "alert",
    title: "bob@example.org",
    body: "New message",
    threadId: "bob@example.org",
    accountId: "alice",
    messageId: "m1",
  }),
  v("NotificationContent", "sync-warning", {
    kind: "alert",
    title: "Could not synchronize",
    body: "Open the app.",
    threadId: "lichen.sync",
    accountId: "alice",
    deliverAt: now + 60000,
  }),
  // A push's one notification standing for several messages (engine PushNotificationBuilder).
  v("NotificationContent", "push-summary", {
    kind: "alert",
    title: "bob@example.org",
    body: "see you at 8",
    threadId: "bob@example.org",
    accountId: "alice@example.org",
    messageId: "m42",
    subtitle: "+3 more · 12 in 2 other chats",
    count: 16,
  }),
  v("NotificationContent", "silent", { kind: "silent", reason: "no-new-messages" }),
  bad("NotificationContent", "alert-without-body", "rejects", {
    kind: "alert",
    title: "t",
    threadId: "t",
    accountId: "a",
  }),
  bad("NotificationContent", "silent-without-reason", "rejects", { kind: "silent" }),
  bad("NotificationContent", "fractional-count", "rejects", {
    kind: "alert",
    title: "t",
    body: "b",
    threadId: "t",
    accountId: "a",
    count: 1.5,
  }),
  bad("NotificationContent", "fractional-deliver-at", "rejects", {
    kind: "alert",
    title: "t",
    body: "b",
    threadId: "t",
    accountId: "a",
    deliverAt: 10.5,
  }),

  v("PushRegistration", "with-module", {
    appServerJid: "push.example.org",
    node: "f".repeat(64),
    pushModule: "ios-prod",
    enabled: true,
    registeredAt: now,
  }),
  v("PushRegistration", "default-app", {
    appServerJid: "push.example.org",
    node: "fcm:token-1234",
    enabled: false,
    registeredAt: now,
  }),
  v("PushRegistration", "disabled-after-error", {
    appServerJid: "push.example.org",
    node: "f".repeat(64),
    enabled: false,
    registeredAt: now,
    status: "disabled",
    lastError: {
      op: "enable",
      condition: "not-allowed",
      text: "push is not allowed for this account",
      at: now + 500,
    },
    updatedAt: now + 500,
  }),
  v("PushRegistration", "enabling", {
    appServerJid: "push.example.org",
    node: "f".repeat(64),
    enabled: false,
    registeredAt: now,
    status: "enabling",
    lastError: null,
  }),
  bad("PushRegistration", "unknown-status", "rejects", {
    appServerJid: "push.example.org",
    node: "f".repeat(64),
    enabled: true,
    registeredAt: now,
    status: "on",
  }),
  bad("PushRegistration", "short-token", "schema-only", {
    appServerJid: "push.example.org",
    node: "abc",
    enabled: true,
    registeredAt: now,
  }),
  bad("PushRegistration", "enabled-as-string", "rejects", {
    appServerJid: "push.example.org",
    node: "f".repeat(64),
    enabled: "yes",
    registeredAt: now,
  }),
  bad("PushRegistration", "negative-registered-at", "schema-only", {
    appServerJid: "push.example.org",
    node: "f".repeat(64),
    enabled: true,
    registeredAt: -1,
  }),
];
