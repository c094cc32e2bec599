/**
 * Runtime validation of every JSON column and IPC row, at the process boundary, with the validators
 * @lichen/schema generates from its types (the single source of truth). Here they are turned into
 * functions that return the value or throw SchemaValidationError naming the first bad field
 * ("sm.inboundH") — a subclass of the schema package's own error, so catching either works.
 */
import {
  SchemaValidationError as SchemaPackageValidationError,
  defaultAccountState,
  validateAccountState as schemaAccountState,
  validateHandlerDescriptor as schemaHandlerDescriptor,
  validateIpcMessage as schemaIpcMessage,
  validateNotificationContent as schemaNotificationContent,
  validateShareOutboxItem as schemaShareOutboxItem,
  validateStreamManagementState as schemaStreamManagementState,
  type AccountState,
  type HandlerDescriptor,
  type IpcMessage,
  type NotificationContent,
  type SchemaIssue,
  type ShareOutboxItem,
  type StreamManagementState,
  type ValidationResult,
} from "@lichen/schema";

/** A value does not match the contract; `field` is a dotted path such as `sm.inboundH`. */
export class SchemaValidationError extends SchemaPackageValidationError {
  override readonly name = "SchemaValidationError";
  constructor(
    readonly typeName: string,
    readonly field: string,
    readonly problem: string,
    issues: SchemaIssue[] = [
      { path: field ? `/${field.replaceAll(".", "/")}` : "", message: problem },
    ],
  ) {
    super(typeName, issues);
    this.message = `invalid ${typeName}: ${field || "(root)"} ${problem}`;
  }
}

/** "/sm/inboundH" -> "sm.inboundH" */
function dotted(path: string): string {
  return path.replace(/^[#/]+/, "").replaceAll("/", ".");
}

/** Turn a schema-package validator into one that returns the value or throws our error. */
export function asserting<T>(
  typeName: string,
  validate: (v: unknown) => ValidationResult<T>,
): (v: unknown) => T {
  return (value: unknown) => {
    const r = validate(value);
    if (r.ok) return r.value;
    const first = r.errors[0] ?? { path: "", message: "is invalid" };
    throw new SchemaValidationError(typeName, dotted(first.path), first.message, r.errors);
  };
}

export const validateAccountState: (v: unknown) => AccountState = asserting(
  "AccountState",
  schemaAccountState,
);
export const validateStreamManagementState: (v: unknown) => StreamManagementState = asserting(
  "StreamManagementState",
  schemaStreamManagementState,
);
export const validateIpcMessage: (v: unknown) => IpcMessage = asserting(
  "IpcMessage",
  schemaIpcMessage,
);
export const validateHandlerDescriptor: (v: unknown) => HandlerDescriptor = asserting(
  "HandlerDescriptor",
  schemaHandlerDescriptor,
);
export const validateShareOutboxItem: (v: unknown) => ShareOutboxItem = asserting(
  "ShareOutboxItem",
  schemaShareOutboxItem,
);
export const validateNotificationContent: (v: unknown) => NotificationContent = asserting(
  "NotificationContent",
  schemaNotificationContent,
);

/** A fresh account state (nothing discovered, no resumable stream), optionally keeping SM state. */
export function freshAccountState(now: number, keepSm?: StreamManagementState): AccountState {
  const state = defaultAccountState(now);
  if (keepSm) state.sm = keepSm;
  return state;
}
