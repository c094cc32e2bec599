export {
  DeviceSimulator,
  type DeviceClock,
  type DeviceSimulatorOptions,
  type DisplayedNotification,
  type Producer,
  type TimelineEntry,
} from "./simulator.js";
export { IOS_RULES, scaledRules, type DeviceRules } from "./rules.js";
export {
  displayedContents,
  parseNseLocalLine,
  parseNsePushLine,
  type NsePushLine,
} from "./adapter.js";
export { startPushChain, setUpAccount, type PushChain } from "./chain.js";
