export {
  AppServer,
  ADMIN_TOKEN_FILE,
  ADMIN_URL_FILE,
  DataDirLock,
  type AppServerOptions,
} from "./appserver.js";
export {
  ConfigError,
  applyEnvOverrides,
  checkConfigFile,
  configIssues,
  ConfigSchema,
  parseDuration,
  loadConfigFile,
  parseConfigText,
  validateConfig,
  type AppConfig,
  type AppServerConfig,
  type AppServerConfigInput,
} from "./config.js";
export type { AppSender, PushJob, SendOutcome } from "./push-service.js";
export { RateLimiter, type RateDecision } from "./rate-limiter.js";
export {
  TokenBlacklist,
  DomainBlacklist,
  type BlacklistChange,
  type DomainState,
  type DomainStatus,
} from "./blacklist.js";
export { DeliveryMemory } from "./deliveries.js";
export { ManualClock, SystemClock, type Clock } from "./clock.js";
export { TokenHasher, checkToken } from "./token.js";
export { FakeComponentServer, pushIq, type ComponentReply } from "./testing/component-server.js";
export { checkAppCredentials, checkCredentials } from "./credentials.js";
export type { AppHealth } from "./push-service.js";
