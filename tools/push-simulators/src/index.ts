export {
  startApnsSimulator,
  type ApnsDelivery,
  type ApnsResponseRecord,
  type ApnsScriptStep,
  type ApnsSimulator,
  type ApnsSimulatorKey,
  type ApnsSimulatorOptions,
} from "./apns.js";
export {
  ApnsCertificateAuthority,
  apnsCertificateKind,
  certificateTopics,
  encodeTopicsExtension,
  type ApnsCertificateKind,
  type ApnsClientCertificate,
} from "./certificates.js";
export {
  generateApnsKey,
  generateFcmServiceAccount,
  type ApnsKey,
  type FcmServiceAccount,
} from "./credentials.js";
export { DeliveryLog } from "./delivery-log.js";
export {
  FCM_SCOPE,
  startFcmSimulator,
  type FcmDelivery,
  type FcmErrorCode,
  type FcmResponseRecord,
  type FcmScriptStep,
  type FcmSimulator,
  type FcmSimulatorOptions,
} from "./fcm.js";
