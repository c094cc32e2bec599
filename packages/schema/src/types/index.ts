export * from "./common.js";
export * from "./handler.js";
export * from "./push.js";
export * from "./lock.js";
export * from "./state.js";
export * from "./notification.js";
export * from "./outbox.js";
export * from "./ipc.js";
