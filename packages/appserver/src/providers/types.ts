/** What the appserver asks a provider to deliver: routing and urgency only, never message content. */
export type PushKind = "alert" | "background";

export interface ProviderPush {
  token: string;
  kind: PushKind;
  collapseId?: string;
  ttlSeconds: number;
  /**
   * Opaque, non-identifying id (becomes apns-id when it is a UUID; logged for correlation). Absent:
   * the provider makes one where it needs one (APNs: a random UUID as apns-id).
   */
  pushId?: string;
}

/** Classification of one attempt; retry policy belongs to the appserver core. */
export type ProviderResult =
  | { outcome: "delivered"; providerId?: string; status: number }
  /** APNs 410 Unregistered/ExpiredToken, 400 BadDeviceToken/DeviceTokenNotForTopic; FCM UNREGISTERED, SENDER_ID_MISMATCH. */
  | { outcome: "invalid-token"; status: number; reason: string }
  | { outcome: "rate-limited"; status: number; reason: string; retryAfterMs?: number }
  /** 5xx, network errors, GOAWAY, timeout (status 0 when no response arrived). */
  | { outcome: "transient"; status: number; reason: string; retryAfterMs?: number }
  /** BadTopic, InvalidProviderToken, PayloadTooLarge, auth errors: the app config is wrong. */
  | { outcome: "misconfigured"; status: number; reason: string };

export interface PushProvider {
  readonly name: string;
  send(push: ProviderPush): Promise<ProviderResult>;
  /**
   * `send` with a callback, called exactly once (possibly before it returns): the appserver's hot
   * path, no promise per push. Optional; a provider without it is driven through `send`.
   */
  sendWith?(push: ProviderPush, done: (r: ProviderResult) => void): void;
  close(): Promise<void>;
}

export interface ApnsAppConfig {
  type: "apns";
  name: string;
  /** Bundle id sent as apns-topic. */
  topic: string;
  /** Token authentication: the .p8 (PKCS#8 P-256) key and its ids ... */
  teamId?: string;
  keyId?: string;
  privateKeyPem?: string;
  /** ... or certificate authentication: a .p12 presented as the TLS client certificate. */
  certificate?: { pfx: Buffer; passphrase?: string };
  /** Origin, e.g. https://api.push.apple.com or http://127.0.0.1:PORT (h2c, simulator). */
  endpoint: string;
  /** Extra CA to trust (simulator's self-signed certificate). */
  caPem?: string;
  /** HTTP/2 sessions in the pool (default 2). */
  connections?: number;
  /** Per-request deadline before the attempt counts as transient (default 10 000). */
  requestTimeoutMs?: number;
  /** Placeholder alert shown until the Notification Service Extension replaces it. */
  alert?: { title: string; body: string };
  /** Fixed extra payload keys beside `aps` (fpush's additionalData). */
  additionalData?: Record<string, unknown>;
}

export interface FcmAppConfig {
  type: "fcm";
  name: string;
  projectId: string;
  /** Service account client_email. */
  clientEmail: string;
  /** Service account private_key (PKCS#8 RSA). */
  privateKeyPem: string;
  /** OAuth2 token endpoint, e.g. https://oauth2.googleapis.com/token. */
  tokenUri: string;
  /** Origin, e.g. https://fcm.googleapis.com. */
  endpoint: string;
  caPem?: string;
  requestTimeoutMs?: number;
  /** Fixed extra keys of the message's data map (FCM data values are strings). */
  additionalData?: Record<string, string>;
}

export type ProviderAppConfig = ApnsAppConfig | FcmAppConfig;

export interface ProviderLogger {
  warn(o: object, m?: string): void;
  info(o: object, m?: string): void;
}

export interface ProviderOptions {
  /** Epoch milliseconds; drives JWT iat/refresh, apns-expiration and token caching. */
  clock?: () => number;
  /** Bound to the app by the caller (the lines carry no app key of their own). */
  logger?: ProviderLogger;
}
