export { openStore } from "./store.js";
export type {
  OpenStoreOptions,
  Store,
  StoreTx,
  StoreDatabase,
  StoreSchema,
  StoreLogger,
} from "./store.js";
export * as tables from "./schema.js";
export {
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
  AccountStateCorruptError,
  IpcTimeoutError,
  LockTimeoutError,
  NotALichenDatabaseError,
  SchemaAheadError,
  SchemaBehindError,
  StoreError,
  TransactionUsageError,
  isBusyError,
} from "./errors.js";
export type { ProcessRole } from "@lichen/schema";
