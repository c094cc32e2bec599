// preserve="true" keeps this reference in dist/index.d.ts, so consumers get the @xmpp/xml types.
// An import cannot bring in a declaration-only file of ambient modules; a reference can.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="../types/xmpp-xml.d.ts" preserve="true" />
export { default as xml, type Element } from "@xmpp/xml";
export { EncryptionFailedError, EncryptionRequiredError } from "./outgoing.js";
export { isChatEncrypted } from "./messages.js";
export {
  DurableSession,
  SessionLockError,
  MessageQueuedError,
  NS_SM,
  type OutgoingMessage,
  type SessionOptions,
  type StanzaContext,
  type PreparedStanza,
  type SessionPlugin,
} from "./session.js";
export {
  HandlerRegistry,
  handlers,
  defineHandler,
  UnknownHandlerError,
  type HandlerContext,
  type HandlerFn,
} from "./handlers.js";
export {
  ensureAccount,
  listAccounts,
  MultiAccountApp,
  type AccountRow,
  type AccountForeground,
} from "./accounts.js";
export {
  PushNotificationBuilder,
  MAX_SUMMARY_CHATS,
  MAX_NOTIFICATION_BODY,
  type PushSummary,
  type ChatSummary,
  type StoredIncoming,
} from "./notifications.js";
export { type AccountSyncResult, type AccountSyncOutcome } from "./nse-sync.js";
export {
  listRoster,
  listSubscriptionRequests,
  type RosterItem,
  type Subscription,
  type SubscriptionRequest,
} from "./roster.js";
export {
  SESSION_EVENTS,
  type SessionEvents,
  type MessageStoredEvent,
  type RoomLeftEvent,
  type RosterEvent,
} from "./events.js";
export { APP_CONTROLLER_EVENTS, type AppControllerEvents } from "./app-events.js";
export { LinkLiveness, DEFAULT_LIVENESS, type LivenessOptions } from "./liveness.js";
export {
  RoomSelfPinger,
  DEFAULT_ROOM_SELF_PING_IDLE_MS,
  type RoomSelfPingOptions,
} from "./room-self-ping.js";
export { startMamCatchup, sendDeferredReceipts, FEATURES } from "./protocol.js";
export {
  ensurePush,
  disablePush,
  pushStatus,
  readPushRegistration,
  checkPushTarget,
  InvalidPushTargetError,
  NS_PUSH,
  type PushTarget,
} from "./push.js";
export {
  AppController,
  handlePush,
  startNse,
  SESSION_LOCK_KEY,
  cancelSyncWarning,
  reconnectDelay,
  isTransientConnectError,
  type ReconnectPolicy,
  type NseOptions,
  type NseResult,
  type NsePushResult,
  type NseRun,
  type NotificationReady,
} from "./modes.js";
export {
  scheduledLocalNotifications,
  takeDueLocalNotifications,
  requestBackgroundTask,
  pendingBackgroundTaskRequests,
  resolveBackgroundTaskRequests,
  unsentWork,
  terminateApp,
  runBackgroundTask,
  BACKGROUND_TASK_REQUESTED,
  type LocalNotification,
  type BackgroundTaskRequest,
  type BackgroundRunOptions,
  type BackgroundRunResult,
} from "./lifecycle.js";
export {
  shareToOutbox,
  sendShareOutbox,
  outboxMessage,
  type ShareInput,
  type SharedFile,
  type ShareOptions,
  type SendOutboxOptions,
} from "./share.js";
export {
  MediaTransfers,
  downloadAttachment,
  type MediaTransferEvents,
  type MediaTransferOptions,
  type DownloadOptions,
  type DownloadedFile,
} from "./media/transfers.js";
export { MediaError, type MediaErrorCode } from "./media/errors.js";
export {
  uploadFailureAction,
  uploadRetryDelay,
  type UploadFailureAction,
  type UploadRetryPolicy,
  type RetryTimers,
} from "./media/retry.js";
export {
  NS_UPLOAD,
  NS_OOB,
  SLOT_REUSE_MS,
  parseSlot,
  type Slot,
  type AttachmentRow,
} from "./media/upload.js";
export {
  encryptFile,
  decryptFile,
  newAesgcmFragment,
  toAesgcmUrl,
  fromAesgcmUrl,
} from "./media/aesgcm.js";
export { checkHttpUrl, httpPut, typeAccepted, type TransferProgress } from "./media/http.js";
export {
  capsVerification,
  parseDiscoInfo,
  featuresOf,
  LICHEN_CAPS_NODE,
  NS_CAPS,
  type DiscoInfo,
  type DiscoIdentity,
  type DiscoForm,
} from "./caps.js";
export {
  joinRoom,
  leaveRoom,
  selfPingRooms,
  startRoomMamCatchup,
  type RoomLeftReason,
} from "./muc.js";
export { acceptInvitation, declineInvitation, type RoomInvitation } from "./room-invitations.js";
export { NS_BOOKMARKS, type Bookmark } from "./bookmarks.js";
export {
  createClient,
  parseAccountJid,
  InvalidJidError,
  type ClientOptions,
  type LichenClient,
  type ParsedJid,
} from "./client.js";
export {
  resolveXmppServices,
  orderSrv,
  type Srv,
  ServiceResolutionError,
  type ServiceCandidate,
  type DnsResolver,
  type ResolveOptions,
} from "./resolve.js";
export {
  markDecrypted,
  wasDecrypted,
  type OutgoingEncryption,
  type PluginPrepared,
} from "./plugins.js";
