// preserve="true" keeps this reference in dist/index.d.ts: importing the kit brings the typings.
// An import cannot bring in a declaration-only file of ambient modules; a reference can.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="../types/xmpp.d.ts" preserve="true" />
export { until, sleep } from "./until.js";
export { prng, seedFromEnv, type Prng } from "./prng.js";
export { selfSignedCert, type SelfSignedCert, type CertOptions } from "./certs.js";
export { runBin, packageJson, type BinResult } from "./cli.js";
export { roomConfigForm, PERSISTENT_ROOM, type XmlFactory } from "./muc.js";
export { loadSchemaVectors, schemasDir, type SchemaVector } from "./vectors.js";
export {
  lichenPushConfig,
  lichenPushComponent,
  startLichenPush,
  LichenPushStartError,
  type LichenPushApnsApp,
  type LichenPushConfigOptions,
  type LichenPushDaemon,
} from "./lichen-push.js";
