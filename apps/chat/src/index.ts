export { buildProgram, main, DEFAULT_DB } from "./program.js";
export { CatchupProgress, TransferProgressLines } from "./progress.js";
export {
  readAccountSettings,
  readAllAccountSettings,
  writeAccountSettings,
  writeAllAccountSettings,
  settingsPath,
  sessionConfig,
  parseBareJid,
  normalizeService,
  type AccountSettings,
} from "./settings.js";
export { shareInput } from "./commands/share.js";
export { CliError } from "./errors.js";
export { lastMessages } from "./commands/history.js";
export { logLine } from "./context.js";
