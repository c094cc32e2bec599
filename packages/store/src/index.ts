export { openStore, checkFence } from "./store.js";
export type {
  StoreFence,
  WriteOptions,
  OpenStoreOptions,
  Store,
  StoreTx,
  StoreDatabase,
  StoreSchema,
  StoreLogger,
} from "./store.js";
export * as tables from "./schema.js";
export {
  listChats,
  listMessages,
  getMessage,
  markChatRead,
  messagesStoredAfter,
  listRecentMessages,
  listRooms,
  listRoomInvitations,
  type RoomInvitationSummary,
  type RoomSummary,
  type RoomOccupant,
  type AccountMessage,
  type RecentMessagesOptions,
  type ChatSummary,
  type StoredMessage,
  type MessageCursor,
  type MessagePage,
  type MessagePageOptions,
} from "./read.js";
export {
  insertMessageRow,
  touchChat,
  type ChatActivity,
  type NewMessageRow,
} from "./message-writes.js";
export {
  ACCOUNT_STATE_JSON_SQL,
  loadAccountState,
  loadAccountStateDetailed,
  saveAccountState,
  type LoadedAccountState,
} from "./account-state.js";
export {
  SchemaValidationError,
  freshAccountState,
  validateAccountState,
  validateHandlerDescriptor,
  validateIpcMessage,
  validateNotificationContent,
  validateShareOutboxItem,
  validateStreamManagementState,
} from "./validation.js";
export {
  MIGRATIONS_TABLE,
  appliedMigrations,
  bundledMigrations,
  migrationStatus,
  migrationsFolder,
  type MigrationStatus,
} from "./migrations.js";
export {
  DatabaseCorruptError,
  FencedOutError,
  IpcTimeoutError,
  LockTimeoutError,
  NotALichenDatabaseError,
  SchemaAheadError,
  SchemaBehindError,
  StoreError,
  StoreLockTimeoutError,
  TransactionUsageError,
  isBusyError,
} from "./errors.js";
export type { ProcessRole } from "@lichen/schema";
export {
  ProcessLock,
  roleOfHolder,
  type LockAttempt,
  type ProcessLockOptions,
  type ProcessLockEvents,
} from "./lock.js";
export {
  Ipc,
  type IpcOptions,
  type IpcOutgoing,
  type IpcReply,
  type IpcHandler,
  type IpcErrorEvent,
} from "./ipc.js";
export {
  acquireAsMain,
  startAsNse,
  yieldOnDisconnectAll,
  type AcquireAsMainResult,
  type NseStartResult,
} from "./priority.js";
export {
  addIdleTimer,
  addIqHandler,
  addPendingNotification,
  addShareOutboxItem,
  duePendingNotifications,
  listIqHandlers,
  listShareOutbox,
  markNotificationDelivered,
  quarantineRow,
  setShareOutboxState,
  takeIqHandler,
  tickConnectedTime,
  type PendingIqHandler,
  type ShareOutboxEntry,
  type ShareOutboxState,
} from "./records.js";
export { OutboundQueue, type QueuedStanza, type QueuedStanzaRow } from "./outbound-queue.js";
export { preparedPerStore } from "./prepared.js";
export {
  checkHeader,
  isCorruptionError,
  readDamageMarker,
  markerPath,
  type DamageMarker,
} from "./corruption.js";
export { sqliteIntegrity, type IntegrityFinding, type SqliteIntegrityResult } from "./integrity.js";
export type { SqliteDriver, SqlStatement, SqlRunResult } from "./driver.js";
export { recoverDatabase, type RecoveredTable, type RecoveryReport } from "./recover.js";
export {
  sqlContract,
  sqlContractConstants,
  type SqlContractConstant,
  type SqlContractStatement,
} from "./sql-contract.js";
