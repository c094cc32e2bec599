import type { Counter, EpochMs, IpcDestination, ProcessRole } from "./common.js";
import type { NotificationContent } from "./notification.js";

/** Fields every IPC message carries. */
export interface IpcEnvelope {
  /**
   * Format version.
   * @TJS-type integer
   * @minimum 1
   * @maximum 1
   */
  v: 1;
  /**
   * Unique message id.
   * @minLength 1
   * @maxLength 200
   */
  id: string;
  /** Sending process. */
  source: ProcessRole;
  /** Receiving process, or "*" for every process. */
  destination: IpcDestination;
  /** Id of the request this message answers, if it is a response. */
  responseTo?: string;
  /** When it was sent. */
  createdAt: EpochMs;
  /** After this it is neither delivered nor answered, and is cleaned up. */
  expiresAt: EpochMs;
}

/** Main app asks every other process to stop driving XMPP sessions and release the lock. */
export interface DisconnectAllMessage extends IpcEnvelope {
  type: "disconnect-all";
  data: {
    /** Why (e.g. "main-app-foreground"). */
    reason: string;
  };
}

/** A process released the session lock in answer to disconnect-all. */
export interface YieldedMessage extends IpcEnvelope {
  type: "yielded";
  data: {
    /** Lock generation at release. */
    lockGeneration: Counter;
    /** Stanza transactions committed before yielding. */
    handledStanzas: Counter;
  };
}

/** The OS delivered a push while an NSE was already lingering: handle it in the same process. */
export interface PushArrivedMessage extends IpcEnvelope {
  type: "push-arrived";
  data: {
    /** Opaque id of the OS notification request. */
    pushId: string;
    receivedAt: EpochMs;
    /** Account the push is for, if known. */
    accountId?: string;
  };
}

/**
 * A lingering NSE's answer to push-arrived: it synced for that push over its own connection
 * (accepted), or it was already ending and the sender must handle the push itself (not accepted).
 */
export interface PushHandledMessage extends IpcEnvelope {
  type: "push-handled";
  data: {
    pushId: string;
    accepted: boolean;
    /** The NSE outcome for this push (synced, deadline, yielded), when accepted. */
    outcome?: string;
    /** The notification contents for this push, when accepted. */
    notifications?: NotificationContent[];
    /** Lock holder of the NSE that handled it, e.g. "nse:4711-ab12cd34". */
    handledBy: string;
  };
}

/** The share extension wrote outbox rows; the main app should send them. */
export interface OutboxChangedMessage extends IpcEnvelope {
  type: "outbox-changed";
  data: {
    itemIds: string[];
  };
}

/** A process could not synchronize an account. */
export interface SyncErrorMessage extends IpcEnvelope {
  type: "sync-error";
  data: {
    accountId: string;
    /** Machine-readable cause (e.g. "deadline", "auth-failed", "network"). */
    code: string;
    message: string;
  };
}

/** A process changed stored state others may cache (chats, messages, roster...). */
export interface StateChangedMessage extends IpcEnvelope {
  type: "state-changed";
  data: {
    accountId?: string;
    /** Which areas changed, e.g. ["messages", "roster"]. */
    areas: string[];
  };
}

/** Liveness probe. */
export interface PingMessage extends IpcEnvelope {
  type: "ping";
  data: {
    /** Echoed back in pong. */
    nonce?: string;
  };
}

/** Answer to ping. */
export interface PongMessage extends IpcEnvelope {
  type: "pong";
  data: {
    nonce?: string;
  };
}

/** Every IPC message, discriminated on `type`. */
export type IpcMessage =
  | DisconnectAllMessage
  | YieldedMessage
  | PushArrivedMessage
  | PushHandledMessage
  | OutboxChangedMessage
  | SyncErrorMessage
  | StateChangedMessage
  | PingMessage
  | PongMessage;

/** The `type` of an IPC message. */
export type IpcMessageType = IpcMessage["type"];
