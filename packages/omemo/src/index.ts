export {
  Omemo,
  omemo,
  type OmemoOptions,
  type OmemoSendResult,
  type RoomOmemoSupport,
  type DeviceFingerprint,
} from "./omemo.js";
export { OmemoError, type DecryptFailureReason } from "./errors.js";
export type { TrustLevel } from "./view.js";
export {
  NS_OMEMO,
  NODE_DEVICELIST,
  NODE_BUNDLES,
  FALLBACK_BODY,
  MAX_DEVICES,
  parseBundle,
  parseDeviceList,
  parseEncrypted,
  type Bundle,
  type EncryptedMessage,
} from "./wire.js";
