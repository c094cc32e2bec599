export type {
  XmppTestServer,
  XmppServerOptions,
  ProsodyOptions,
  EjabberdOptions,
  RedisTestServer,
} from "./types.js";
export { startProsody } from "./prosody.js";
export { startEjabberd } from "./ejabberd.js";
export { startRedis } from "./redis.js";
export { ensureInstalled, requireInstalled, missingFor, type ServerKind } from "./ensure.js";
export { freePort, freePorts, isPortOpen, waitForPort } from "./util.js";
export { startFlakyLink, type FlakyLink } from "./link.js";
export {
  startTestPeer,
  streamManagementEnabled,
  type TestPeer,
  type TestPeerClient,
  type ReceivedMessage,
  type PendingTestIq,
} from "./peer.js";
export { startDnsServer, type DnsRecords, type DnsTestServer, type SrvRecord } from "./dns.js";
